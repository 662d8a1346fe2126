// prism/pca.cpp: centring, the Gram matrix, the symmetric eigenproblem and the sign rule.
#include "prism/pca.hpp"

#include <Spectra/SymEigsSolver.h>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "engine/error.hpp"
#include "prism/gram.hpp"

namespace prism {
namespace {

// Gram matrices up to this side get every eigenvalue (so every component's variance ratio);
// larger ones only their leading_components largest: the dense solver's O(n^3) took 8 ms at
// n = 392 (ResNet-50's last capture of 8 images) and a second at n = 2048 (of 64 images).
constexpr int64_t largest_fully_solved = 128;
constexpr int leading_components = 32;

// The top `count` eigenpairs of a large symmetric positive semi-definite matrix, largest first,
// by Lanczos iteration (Spectra); false if it does not converge.
bool top_eigen_lanczos(const MatrixD& gram, int count, Eigen::VectorXd& values, MatrixD& vectors) {
  const int n = static_cast<int>(gram.rows());
  Spectra::DenseSymMatProd<double> product(gram);
  Spectra::SymEigsSolver<Spectra::DenseSymMatProd<double>> solver(product, count,
                                                                  std::min(n, std::max(2 * count + 1, 24)));
  solver.init();
  solver.compute(Spectra::SortRule::LargestAlge, 1000, 1e-12);
  if (solver.info() != Spectra::CompInfo::Successful) return false;
  values = solver.eigenvalues();
  vectors = solver.eigenvectors();
  return true;
}

// Every eigenvalue and the top `count` eigenvectors from Eigen's dense solver, largest first.
void dense_eigen(const MatrixD& gram, int count, Eigen::VectorXd& values, MatrixD& vectors) {
  Eigen::SelfAdjointEigenSolver<MatrixD> solver(gram);  // ascending order
  values = solver.eigenvalues().reverse();
  vectors = solver.eigenvectors().rowwise().reverse().leftCols(count);
}

}  // namespace

int components_needed(const std::vector<int>& components) {
  int wanted = 0;
  for (int c : components) {
    if (c < 0) throw Error("principal components are numbered from 1");
    wanted = std::max(wanted, c + 1);
  }
  return wanted;
}

GramEigen solve_gram(const MatrixD& gram, int wanted) {
  const int n = static_cast<int>(gram.rows());
  GramEigen result;
  result.solved = std::min(wanted, n);
  const int solved = result.solved;
  // Every eigenvalue is needed for the variance ratios, only the first few eigenvectors for the
  // maps: a small matrix is solved densely once; a middling one gets its eigenvalues alone, then
  // Lanczos for the vectors (the dense solver again only if Lanczos does not converge); a large
  // one gets Lanczos for its leading components, the total variance being the Gram's trace.
  const bool dense = n <= 64 || solved >= n / 2;
  const bool leading_only = n > largest_fully_solved && !dense;
  Eigen::VectorXd& all_values = result.values;
  MatrixD& vectors = result.vectors;
  int64_t reported = n;
  if (leading_only) {
    const int count = std::min(n - 1, std::max(leading_components, solved));
    if (!top_eigen_lanczos(gram, count, all_values, vectors)) dense_eigen(gram, solved, all_values, vectors);
    result.total = std::max(0.0, gram.trace());
    reported = std::min<int64_t>(count, all_values.size());
  } else if (dense) {
    dense_eigen(gram, solved, all_values, vectors);
  } else {
    all_values = Eigen::SelfAdjointEigenSolver<MatrixD>(gram, Eigen::EigenvaluesOnly).eigenvalues().reverse();
  }
  if (!leading_only) result.total = std::max(0.0, all_values.head(n).cwiseMax(0.0).sum());
  for (int64_t i = 0; i < reported; ++i) {
    result.explained_variance_ratio.push_back(result.total > 0 ? std::max(0.0, all_values[i]) / result.total : 0.0);
  }
  if (solved == 0 || result.total <= 0.0) return result;
  Eigen::VectorXd leading_values;  // the eigenvalues already in all_values are kept
  if (!dense && !leading_only && !top_eigen_lanczos(gram, solved, leading_values, vectors)) {
    dense_eigen(gram, solved, all_values, vectors);
  }
  return result;
}

bool GramEigen::usable(int component) const {
  if (component >= solved || total <= 0.0) return false;
  const double negligible = 1e-12 * std::max(values[0], 0.0);
  return values[component] > negligible;
}

bool orient_sign(Eigen::VectorXd& loading) {
  Eigen::Index largest = 0;
  loading.cwiseAbs().maxCoeff(&largest);
  if (loading[largest] >= 0) return false;
  loading = -loading;
  return true;
}

PrincipalComponents principal_components(ConstTensorView activations, const std::vector<int>& components) {
  if (activations.shape.size() != 4)
    throw Error("PCA needs an (N, C, H, W) capture, got " + shape_to_string(activations.shape));
  const int64_t batch = activations.dim(0), channels = activations.dim(1);
  const int64_t plane = activations.dim(2) * activations.dim(3);
  const int64_t rows = batch * plane;  // samples: every pixel of every image
  const int wanted = components_needed(components);

  // X: (rows, C), row = (image, y, x) in that order, as TorchPRISM's permute(0, 2, 3, 1) makes it.
  MatrixD x(rows, channels);
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* source = activations.data + (n * channels + c) * plane;
      for (int64_t p = 0; p < plane; ++p) x(n * plane + p, c) = source[p];
    }
  }
  x.rowwise() -= x.colwise().mean();

  // The Gram matrix on the smaller side has the same non-zero eigenvalues, S^2; a large one is
  // formed in single precision (see gram.hpp).
  const bool channel_side = channels <= rows;
  const int64_t side = std::min(rows, channels);
  MatrixD gram;
  if (side < smallest_single_precision_gram) {
    gram = channel_side ? MatrixD(x.transpose() * x) : MatrixD(x * x.transpose());
  } else {
    const Eigen::MatrixXf single = x.cast<float>();
    gram = (channel_side ? Eigen::MatrixXf(single.transpose() * single) : Eigen::MatrixXf(single * single.transpose()))
               .cast<double>();
  }
  GramEigen eigen = solve_gram(gram, wanted);
  PrincipalComponents result;
  result.explained_variance_ratio = std::move(eigen.explained_variance_ratio);
  const int64_t k = static_cast<int64_t>(components.size());
  result.scores = Tensor({batch, k, activations.dim(2), activations.dim(3)});
  result.loadings = Tensor({k, channels});
  for (int64_t j = 0; j < k; ++j) {
    const int component = components[j];
    if (!eigen.usable(component)) continue;
    const double singular = std::sqrt(eigen.values[component]);
    // V (length C) and U * S (length rows) of this component, from whichever side was solved.
    Eigen::VectorXd loading, score;
    if (channel_side) {
      loading = eigen.vectors.col(component);
      score = x * loading;
    } else {
      score = eigen.vectors.col(component) * singular;
      loading = x.transpose() * eigen.vectors.col(component) / singular;
    }
    if (orient_sign(loading)) score = -score;
    for (int64_t c = 0; c < channels; ++c) result.loadings.data()[j * channels + c] = static_cast<float>(loading[c]);
    for (int64_t n = 0; n < batch; ++n) {
      float* target = result.scores.data() + (n * k + j) * plane;
      for (int64_t p = 0; p < plane; ++p) target[p] = static_cast<float>(score[n * plane + p]);
    }
  }
  return result;
}

}  // namespace prism
