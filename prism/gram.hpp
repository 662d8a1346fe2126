// prism/gram.hpp: the part of PRISM's PCA that does not care where the Gram matrix was formed:
// its symmetric eigenproblem, the explained variance and the sign rule. Shared by the CPU PCA
// (prism/pca.cpp) and the CUDA one (prism/cuda/prism_cuda.cpp), which forms the Gram matrix and
// the scores on the GPU and solves this small problem on the host. Uses Eigen: keep it out of .cu
// files.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <functional>
#include <vector>

namespace prism {

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

// Gram matrices from this side on are formed in single precision: the products are the expensive
// part (side^2 x samples), and float's error over thousands of terms (about 1e-6 of the largest
// entry) is far below what maps or ratios show.
constexpr int64_t smallest_single_precision_gram = 128;

struct GramEigen {
  Eigen::VectorXd values;  // eigenvalues, largest first: every one, or the leading ones (see pca.hpp)
  MatrixD vectors;         // the eigenvectors of the first `solved` values, as columns
  std::vector<double> explained_variance_ratio;
  double total = 0.0;  // the total variance (sum of every eigenvalue, or the trace)
  int solved = 0;      // how many leading components exist and were solved for

  // Whether a component has a direction worth showing: it exists and its variance is not
  // numerical noise next to the largest (an arbitrary direction would show as random colours).
  bool usable(int component) const;
};

// How many leading components a request for `components` (0-based) needs solved; throws for a
// negative one. Checked before any work, by the CPU and the GPU PCA alike.
int components_needed(const std::vector<int>& components);

// The eigen-decomposition of a (side x side) Gram matrix of centred data, for components
// 0 .. wanted - 1. A single-precision one (formed so from side smallest_single_precision_gram on)
// is solved as it is where only its leading components are needed, else in double.
GramEigen solve_gram(const MatrixD& gram, int wanted);
GramEigen solve_gram(const Eigen::MatrixXf& gram, int wanted);

// y = G x for a Gram matrix held elsewhere (left on the GPU where it was formed).
using GramProduct = std::function<void(const double* x, double* y)>;

// Whether solve_gram wants only the leading eigenpairs of a side-n Gram matrix for `wanted`
// components (found by Lanczos); then solve_gram_leading can find them from products alone.
bool gram_leading_only(int64_t side, int wanted);

// solve_gram, where gram_leading_only, for a Gram matrix seen only through products and its trace
// (the total variance); false if Lanczos does not converge (then solve the matrix itself).
bool solve_gram_leading(int64_t side, const GramProduct& product, double trace, int wanted, GramEigen& result);

// The sign rule: negates `loading` (and returns true) unless its entry of largest absolute value
// (the first on a tie) is positive; the caller negates the scores to match.
bool orient_sign(Eigen::VectorXd& loading);

}  // namespace prism
