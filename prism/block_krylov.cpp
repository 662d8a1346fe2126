// prism/block_krylov.cpp: block Krylov iteration with Rayleigh-Ritz extraction (see the header).
// Spectra, which finds the smaller matrices' eigenpairs, has no block method in Debian's 1.0.1;
// this one needs only Eigen's dense products and its small symmetric eigensolver.
#include "prism/block_krylov.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace prism {
namespace {

// Uniform in [-1, 1) from the raw generator: the same numbers with every standard library (its
// distributions are free to differ).
void fill_random(Eigen::Ref<Eigen::VectorXd> column, std::mt19937_64& random) {
  for (Eigen::Index i = 0; i < column.size(); ++i) column[i] = static_cast<double>(random() >> 11) * 0x1.0p-52 - 1.0;
}

// Makes `block` (n, b) orthonormal and orthogonal to the first m columns of `basis`: twice a
// projection off the basis as a whole (two matrix products), then column by column off the
// block's earlier columns, twice ("twice is enough" for classical Gram-Schmidt). A column that
// was (nearly) in the span already, as happens once the products stop adding new directions (a
// matrix of low rank), is replaced by a random one, so the basis always grows by a full block:
// any orthonormal extension serves Rayleigh-Ritz. Returns the length of what such replacements
// dropped from the block's span (a Frobenius norm; 0 when none was needed).
double orthonormalise(const MatrixD& basis, Eigen::Index m, MatrixD& block, std::mt19937_64& random) {
  const auto known = basis.leftCols(m);
  const Eigen::VectorXd norms_before = block.colwise().norm().transpose();
  for (int pass = 0; pass < 2; ++pass) block -= known * (known.transpose() * block);
  double dropped = 0.0;
  for (Eigen::Index j = 0; j < block.cols(); ++j) {
    auto column = block.col(j);
    double before = norms_before[j];
    for (int attempt = 0;; ++attempt) {
      const auto earlier = block.leftCols(j);
      for (int pass = 0; pass < 2; ++pass) column -= earlier * (earlier.transpose() * column);
      const double after = column.norm();
      // Below 1e-6 of its length, what is left of the column is mostly rounding and would bring
      // that rounding (relative 1e-16 / 1e-6) back into the basis as loss of orthogonality.
      if (after > 1e-6 * before || (attempt > 0 && after > 0.0)) {
        column /= after;
        break;
      }
      if (attempt == 0) dropped += after * after;
      fill_random(column, random);
      before = column.norm();
      for (int pass = 0; pass < 2; ++pass) column -= known * (known.transpose() * column);
    }
  }
  return std::sqrt(dropped);
}

}  // namespace

bool top_eigen_block_krylov(int64_t n, const GramBlockProduct& product, int count, const BlockKrylovOptions& options,
                            Eigen::VectorXd& values, MatrixD& vectors) {
  const Eigen::Index block = options.block;
  // The basis holds whole blocks and stays well short of n (then random replacements always
  // find a new direction).
  const Eigen::Index largest = std::min<Eigen::Index>(options.largest_basis, n / 2) / block * block;
  if (count < 1 || block < 1 || count > largest) return false;

  MatrixD basis(n, largest), products(n, largest);  // Q and G Q, block by block
  MatrixD projected(largest, largest);              // Q^T G Q, the Rayleigh quotient
  std::mt19937_64 random(20240601);
  MatrixD newest(n, block), product_of_newest(n, block);
  for (Eigen::Index j = 0; j < block; ++j) fill_random(newest.col(j), random);
  orthonormalise(basis, 0, newest, random);

  for (Eigen::Index m = 0; m + block <= largest; m += block) {
    product(newest, product_of_newest);
    basis.middleCols(m, block) = newest;
    products.middleCols(m, block) = product_of_newest;
    // The new rows and columns of Q^T G Q, each off-diagonal part averaged with its mirror image
    // (G Q carries single-precision rounding, so the two differ in the last digits).
    const Eigen::Index size = m + block;
    projected.block(0, m, size, block) = basis.leftCols(size).transpose() * product_of_newest;
    if (m > 0) {
      const MatrixD mirror = products.leftCols(m).transpose() * newest;  // (m, block)
      projected.block(0, m, m, block) = 0.5 * (projected.block(0, m, m, block) + mirror);
      projected.block(m, 0, block, m) = projected.block(0, m, m, block).transpose();
    }
    const MatrixD diagonal = projected.block(m, m, block, block);
    projected.block(m, m, block, block) = 0.5 * (diagonal + diagonal.transpose());

    // The next block: G times the newest, made orthogonal to everything before. It also bounds
    // each Ritz pair's residual without another product: G Q = Q T + Q_next R E^T, the block
    // Krylov relation, where R = Q_next^T (G Q_newest) and E^T takes the newest block's rows of a
    // pair's coefficients s. So for y = Q s, |G y - theta y| = |R s_newest|, plus at most what the
    // orthonormalisation dropped times |s_newest|.
    newest = product_of_newest;
    const double dropped = orthonormalise(basis, size, newest, random);
    if (size >= count) {
      Eigen::SelfAdjointEigenSolver<MatrixD> small(projected.topLeftCorner(size, size));  // ascending
      const Eigen::VectorXd theta = small.eigenvalues().tail(count).reverse();
      const MatrixD s = small.eigenvectors().rightCols(count).rowwise().reverse();  // (size, count)
      const MatrixD coupling = newest.transpose() * product_of_newest;              // R (block, block)
      const MatrixD residuals = coupling * s.bottomRows(block);                     // (block, count)
      const double scale = std::max(theta[0], 0.0);
      bool converged = true;
      for (int i = 0; i < count && converged; ++i) {
        const double bound = residuals.col(i).norm() + dropped * s.col(i).tail(block).norm();
        converged = bound <= options.tolerance * scale;
      }
      if (converged) {
        values = theta;
        vectors = basis.leftCols(size) * s;
        return true;
      }
    }
  }
  return false;
}

}  // namespace prism
