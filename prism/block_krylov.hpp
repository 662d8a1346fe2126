// prism/block_krylov.hpp: the leading eigenpairs of a large symmetric positive semi-definite matrix
// seen only through its products with blocks of vectors: PRISM's PCA of a wide capture (ResNet's
// 2048 channels) without forming its Gram matrix. Leaves out everything else: restarts, and any
// matrix that does not converge within the basis it is given (the caller falls back on Lanczos).
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <functional>

#include "prism/gram.hpp"

namespace prism {

// w (n, b) = G v (n, b), for a block v of orthonormal columns.
using GramBlockProduct = std::function<void(const MatrixD& v, MatrixD& w)>;

struct BlockKrylovOptions {
  int block = 16;           // vectors per product
  int largest_basis = 384;  // columns the Krylov basis may reach before giving up
  // A pair (theta, y) has converged when |G y - theta y| <= tolerance * theta_largest. Products
  // in single precision are exact to a few 1e-7 of that scale: the tolerance must stay above it.
  double tolerance = 1e-5;
};

// The top `count` eigenpairs of the n x n matrix G behind `product`, largest first, by block
// Krylov iteration with full reorthogonalisation (block Lanczos without its three-term shortcut):
// the basis starts from a seeded random block and grows by G times its newest block, made
// orthogonal to the basis; after each product the Rayleigh-Ritz pairs of G on the basis are
// checked against the tolerance. Deterministic: the same products give the same result. False,
// with nothing written, if the basis reaches options.largest_basis first.
bool top_eigen_block_krylov(int64_t n, const GramBlockProduct& product, int count, const BlockKrylovOptions& options,
                            Eigen::VectorXd& values, MatrixD& vectors);

}  // namespace prism
