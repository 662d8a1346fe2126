// prism/pca.cpp: centring, the Gram matrix, the symmetric eigenproblem and the sign rule.
#include "prism/pca.hpp"

#include <Spectra/SymEigsSolver.h>
#include <omp.h>
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>

#include "engine/error.hpp"
#include "layers/cpu/gemm.hpp"
#include "prism/block_krylov.hpp"
#include "prism/gram.hpp"
#include "prism/lane_sum.hpp"

namespace prism {
namespace {

// Gram matrices up to this side get every eigenvalue (so every component's variance ratio);
// larger ones only their leading_components largest: the dense solver's O(n^3) took 8 ms at
// n = 392 (ResNet-50's last capture of 8 images) and a second at n = 2048 (of 64 images).
constexpr int64_t largest_fully_solved = 128;
constexpr int leading_components = 32;

// From this side on (in single precision, where only the leading components are wanted) the
// Gram matrix is not formed at all: block Krylov iteration finds them from products of the
// centred data with blocks of vectors (about 110 vectors in all, against the side's worth that
// forming the matrix costs, and Lanczos's 80 or so products after it). 64 images of ResNet-50's
// layer4 (2048 x 2048 over 3136 samples): the Gram product took 56-63 ms and Lanczos 33-35, the
// whole PCA 39 ms this way. Measured on ResNet-50's layer4, the two ways break even at a side of
// about 850 on the samples' side (against 2048 channels) and 700 on the channels' (3136 samples).
constexpr int64_t smallest_block_krylov_side = 768;

using MatrixFRows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// G = A A^T (side x side) over `depth`, A packed, b = A^T (depth, side) row-major, in single
// precision by the engine's packed GEMM: only the blocks on and below the diagonal, in bands of
// eight row panels shared out over the threads (each band one thread's product, the longest
// first), then mirrored. Eigen's symmetric rank update used one thread and took 46 ms for 32
// images of ResNet-50's layer4 (1568 x 1568 over 2048 channels). Bands of 32 panels, each
// product on every thread, wasted more above the diagonal and waited at every depth block: the
// PCA of 8 images of ResNet-50's layer4 (392 x 392 over 2048) took 4.3-4.5 ms, now 3.7-3.9.
Eigen::MatrixXf lower_half_product(const PackedMatrix& a, const float* b) {
  const int64_t side = a.rows;
  Eigen::MatrixXf gram(side, side);  // column-major; symmetric, so its storage reads row-major too
  constexpr int64_t band = 8 * gemm_rows_per_panel;
  const int threads = omp_get_max_threads();
  const int64_t per_thread = gemm_workspace_floats(a.depth, side);
  Tensor workspace = Tensor::uninitialized({per_thread * threads});  // each panel packed before it is read
#pragma omp parallel for schedule(dynamic) num_threads(threads)
  for (int64_t first = (side - 1) / band * band; first >= 0; first -= band) {
    const int64_t last = std::min(side, first + band);
    // Rows [first, last) of G, columns [0, last): the band's part on and below the diagonal.
    gemm_packed(a, b, side, last, gram.data(), side, GemmEpilogue{},
                workspace.data() + omp_get_thread_num() * per_thread, 1, first, last);
  }
  // Row i of G (computed up to its band's end) is column i of the column-major matrix: the
  // entries above the diagonal are there; copy them below, tile by tile (element by element the
  // reads stride through 16 MB: 13 ms for a 2048 x 2048 matrix against 2).
  constexpr int64_t tile = 64;
#pragma omp parallel for schedule(dynamic)
  for (int64_t column_tile = 0; column_tile < side; column_tile += tile) {
    for (int64_t row_tile = column_tile; row_tile < side; row_tile += tile) {
      for (int64_t i = column_tile; i < std::min(side, column_tile + tile); ++i) {
        for (int64_t j = std::max(row_tile, i + 1); j < std::min(side, row_tile + tile); ++j) gram(j, i) = gram(i, j);
      }
    }
  }
  return gram;
}

// X^T X (C x C) of centred x (rows, C) stored by rows: A = X^T is packed reading X along its
// rows, and X itself is B.
Eigen::MatrixXf channel_gram(const MatrixFRows& x) {
  const PackedMatrix a = gemm_pack_a(x.data(), x.cols(), x.rows(), 1, x.cols(), Lifetime::transient);
  return lower_half_product(a, x.data());
}

// X X^T (rows x rows) of centred x (rows, C) stored by columns: A = X is packed reading X along
// its columns, and the storage of X is X^T by rows, which is B.
Eigen::MatrixXf pixel_gram(const Eigen::MatrixXf& x) {
  const PackedMatrix a = gemm_pack_a(x.data(), x.rows(), x.cols(), 1, x.rows(), Lifetime::transient);
  return lower_half_product(a, x.data());
}

// The Gram matrix of small data in double (side under smallest_single_precision_gram): X^T X on
// the channel side, X X^T on the pixels', X (rows, C) by columns. The sum over the other side
// runs in fixed groups of 256 terms, each group's product a symmetric rank update (the lower
// half only) on whichever thread takes it, the groups then added in order: the same result on
// any number of threads. Eigen's full product on one thread took 0.17 ms for ResNet-50's layer4
// at batch 1 (49 x 49 over 2048 channels), this 0.095 on two (a harness of the PCA's parts).
MatrixD small_gram(const MatrixD& x, bool channel_side) {
  const Eigen::Index side = channel_side ? x.cols() : x.rows(), terms = channel_side ? x.rows() : x.cols();
  constexpr Eigen::Index group = 256;
  const Eigen::Index groups = (terms + group - 1) / group;
  std::vector<MatrixD> partial(groups);
#pragma omp parallel for schedule(dynamic)
  for (Eigen::Index g = 0; g < groups; ++g) {
    const Eigen::Index first = g * group, count = std::min(group, terms - first);
    partial[g] = MatrixD::Zero(side, side);
    if (channel_side) {
      partial[g].selfadjointView<Eigen::Lower>().rankUpdate(x.middleRows(first, count).transpose());
    } else {
      partial[g].selfadjointView<Eigen::Lower>().rankUpdate(x.middleCols(first, count));
    }
  }
  MatrixD gram = std::move(partial[0]);
  for (Eigen::Index g = 1; g < groups; ++g) gram.triangularView<Eigen::Lower>() += partial[g];
  return gram.selfadjointView<Eigen::Lower>();  // the upper half mirrored from the lower
}

// y = G x for Lanczos, with G held in single precision (exact where it was formed in single
// precision, see gram.hpp) and every sum in double. Lanczos takes tens of these products (66 for
// 32 eigenpairs of a 2048 x 2048 matrix): only the triangle on and below the diagonal is read,
// each column of it both dotted with x (for y_i) and scattered (for the y_j it meets below the
// diagonal) into the thread's own y, the threads' y then added in order: the same result on
// every run with the same number of threads. Row by row over the whole matrix, solve_gram took
// 31-36 ms against 25-28 for 64 images of ResNet-50's layer4. Spectra's own product uses one
// thread.
class SinglePrecisionGramProduct {
 public:
  using Scalar = double;
  explicit SinglePrecisionGramProduct(const Eigen::MatrixXf& gram) : gram_(gram) {}
  Eigen::Index rows() const { return gram_.rows(); }
  Eigen::Index cols() const { return gram_.cols(); }
  void perform_op(const double* x_in, double* y_out) const {
    const Eigen::Index n = gram_.rows();
    const int threads = omp_get_max_threads();
    std::vector<double> partial(static_cast<size_t>(threads) * n);
#pragma omp parallel num_threads(threads)
    {
      const int thread = omp_get_thread_num(), team = omp_get_num_threads();
      double* __restrict y = partial.data() + thread * n;  // never x_in
      std::fill(y, y + n, 0.0);
      // Columns [i, n) of the triangle shared out in equal areas: column i holds n - i entries.
      auto first_column = [&](int t) {
        return static_cast<Eigen::Index>(std::llround(n * (1.0 - std::sqrt(1.0 - static_cast<double>(t) / team))));
      };
      for (Eigen::Index i = first_column(thread); i < first_column(thread + 1); ++i) {
        const float* column = gram_.data() + i * n;  // G(j, i) for j >= i from column[i] on
        const double xi = x_in[i];
        constexpr Eigen::Index lanes = 8;  // partial sums the compiler keeps in one vector
        double dot[lanes] = {};
        Eigen::Index j = i + 1;
        for (; j + lanes <= n; j += lanes) {
          for (Eigen::Index l = 0; l < lanes; ++l) {
            dot[l] += static_cast<double>(column[j + l]) * x_in[j + l];
            y[j + l] += static_cast<double>(column[j + l]) * xi;
          }
        }
        double sum = static_cast<double>(column[i]) * xi;
        for (; j < n; ++j) {
          sum += static_cast<double>(column[j]) * x_in[j];
          y[j] += static_cast<double>(column[j]) * xi;
        }
        for (Eigen::Index l = 0; l < lanes; ++l) sum += dot[l];
        y[i] += sum;
      }
    }
    for (Eigen::Index i = 0; i < n; ++i) {
      double sum = 0.0;
      for (int t = 0; t < threads; ++t) sum += partial[t * n + i];
      y_out[i] = sum;
    }
  }

 private:
  const Eigen::MatrixXf& gram_;
};

// G = A^T A for A (other, side) stored by rows, a view of the centred data (X (rows, C) on the
// channel side, its transpose on the pixel side), seen only through products with blocks of
// vectors, W = A^T (A V), for block Krylov iteration. One pass over A per product: each 64 rows
// of A (512 KB at 2048 wide) are multiplied by V and, still in L2, their transpose by the result.
// The rows are summed in fixed groups of 256, the groups added in order: the same result on any
// number of threads.
class ImplicitGramProduct {
 public:
  explicit ImplicitGramProduct(Eigen::Map<const MatrixFRows> a)
      : a_(a), partial_sums_((a.rows() + rows_per_group - 1) / rows_per_group) {}

  void operator()(const MatrixD& v, MatrixD& w) {
    const Eigen::Index side = a_.cols(), other = a_.rows(), block = v.cols();
    const Eigen::MatrixXf v_single = v.cast<float>();  // (side, block)
    const Eigen::Index groups = static_cast<Eigen::Index>(partial_sums_.size());
#pragma omp parallel for schedule(dynamic)
    for (Eigen::Index group = 0; group < groups; ++group) {
      Eigen::MatrixXf& sum = partial_sums_[group];  // (side, block)
      sum.setZero(side, block);
      Eigen::MatrixXf scores(rows_per_pass, block);  // A's rows times V
      const Eigen::Index end = std::min(other, (group + 1) * rows_per_group);
      for (Eigen::Index first = group * rows_per_group; first < end; first += rows_per_pass) {
        const Eigen::Index count = std::min(rows_per_pass, end - first);
        const auto rows = a_.middleRows(first, count);
        scores.topRows(count).noalias() = rows * v_single;
        sum.noalias() += rows.transpose() * scores.topRows(count);
      }
    }
    w.setZero(side, block);
    for (const Eigen::MatrixXf& sum : partial_sums_) w += sum.cast<double>();
  }

  // The trace of G (the total variance): every element of A squared, in double, group by group.
  double trace() const {
    const Eigen::Index groups = static_cast<Eigen::Index>(partial_sums_.size());
    std::vector<double> sums(groups, 0.0);
#pragma omp parallel for schedule(dynamic)
    for (Eigen::Index group = 0; group < groups; ++group) {
      const Eigen::Index first = group * rows_per_group;
      const auto rows = a_.middleRows(first, std::min(rows_per_group, a_.rows() - first));
      sums[group] = rows.cast<double>().squaredNorm();
    }
    double total = 0.0;
    for (double sum : sums) total += sum;
    return total;
  }

 private:
  static constexpr Eigen::Index rows_per_group = 256, rows_per_pass = 64;
  Eigen::Map<const MatrixFRows> a_;
  std::vector<Eigen::MatrixXf> partial_sums_;  // each group's A^T A V
};

// The top `count` eigenpairs of a large symmetric positive semi-definite matrix, largest first,
// by Lanczos iteration (Spectra); false if it does not converge.
template <typename Product>
bool top_eigen_lanczos_with(Product product, int count, Eigen::VectorXd& values, MatrixD& vectors) {
  const int n = static_cast<int>(product.rows());
  Spectra::SymEigsSolver<Product> solver(product, count, std::min(n, std::max(2 * count + 1, 24)));
  solver.init();
  solver.compute(Spectra::SortRule::LargestAlge, 1000, 1e-12);
  if (solver.info() != Spectra::CompInfo::Successful) return false;
  values = solver.eigenvalues();
  vectors = solver.eigenvectors();
  return true;
}

bool top_eigen_lanczos(const MatrixD& gram, int count, Eigen::VectorXd& values, MatrixD& vectors) {
  if (gram.rows() >= smallest_single_precision_gram) {
    const Eigen::MatrixXf single = gram.cast<float>();
    return top_eigen_lanczos_with(SinglePrecisionGramProduct(single), count, values, vectors);
  }
  return top_eigen_lanczos_with(Spectra::DenseSymMatProd<double>(gram), count, values, vectors);
}

// Every eigenvalue and the top `count` eigenvectors from Eigen's dense solver, largest first.
void dense_eigen(const MatrixD& gram, int count, Eigen::VectorXd& values, MatrixD& vectors) {
  Eigen::SelfAdjointEigenSolver<MatrixD> solver(gram);  // ascending order
  values = solver.eigenvalues().reverse();
  vectors = solver.eigenvectors().rowwise().reverse().leftCols(count);
}

// Whether a Gram matrix of side n is solved densely once (small, or most of it wanted), or gets
// only its leading eigenvalues (Lanczos, the trace for the total), and how many.
bool solved_densely(int n, int solved) {
  return n <= 64 || solved >= n / 2;
}
bool leading_only(int n, int solved) {
  return n > largest_fully_solved && !solved_densely(n, solved);
}
int leading_count(int n, int solved) {
  return std::min(n - 1, std::max(leading_components, solved));
}

// The explained variance ratios of the first `reported` values, and the total.
void set_ratios(GramEigen& result, double total, int64_t reported) {
  result.total = std::max(0.0, total);
  for (int64_t i = 0; i < reported; ++i) {
    result.explained_variance_ratio.push_back(result.total > 0 ? std::max(0.0, result.values[i]) / result.total : 0.0);
  }
}

// y = G x through a function (a Gram matrix left on the GPU), for Spectra.
class FunctionProduct {
 public:
  using Scalar = double;
  FunctionProduct(int64_t side, const GramProduct& product) : side_(side), product_(product) {}
  Eigen::Index rows() const { return side_; }
  Eigen::Index cols() const { return side_; }
  void perform_op(const double* x_in, double* y_out) const { product_(x_in, y_out); }

 private:
  int64_t side_;
  const GramProduct& product_;
};

// The leading eigenpairs of a side-n Gram matrix (gram_leading_only) by Lanczos, the total
// variance being its trace; false if Lanczos does not converge.
template <typename Product>
bool leading_eigen(Product product, int n, int wanted, double trace, GramEigen& result) {
  result.solved = std::min(wanted, n);
  const int count = leading_count(n, result.solved);
  if (!top_eigen_lanczos_with(product, count, result.values, result.vectors)) return false;
  set_ratios(result, trace, std::min<int64_t>(count, result.values.size()));
  return true;
}

// The same from block products (prism/block_krylov.hpp); false if it does not converge.
bool leading_eigen_by_blocks(ImplicitGramProduct product, int n, int wanted, GramEigen& result) {
  result.solved = std::min(wanted, n);
  const int count = leading_count(n, result.solved);
  const auto products = [&product](const MatrixD& v, MatrixD& w) { product(v, w); };
  if (!top_eigen_block_krylov(n, products, count, BlockKrylovOptions{}, result.values, result.vectors)) return false;
  set_ratios(result, product.trace(), count);
  return true;
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
  const bool dense = solved_densely(n, solved);
  Eigen::VectorXd& all_values = result.values;
  MatrixD& vectors = result.vectors;
  if (leading_only(n, solved)) {
    const int count = leading_count(n, solved);
    if (!top_eigen_lanczos(gram, count, all_values, vectors)) dense_eigen(gram, solved, all_values, vectors);
    set_ratios(result, gram.trace(), std::min<int64_t>(count, all_values.size()));
    return result;
  }
  if (dense) {
    dense_eigen(gram, solved, all_values, vectors);
  } else {
    all_values = Eigen::SelfAdjointEigenSolver<MatrixD>(gram, Eigen::EigenvaluesOnly).eigenvalues().reverse();
  }
  set_ratios(result, all_values.head(n).cwiseMax(0.0).sum(), n);
  if (solved == 0 || result.total <= 0.0) return result;
  Eigen::VectorXd leading_values;  // the eigenvalues already in all_values are kept
  if (!dense && !top_eigen_lanczos(gram, solved, leading_values, vectors)) {
    dense_eigen(gram, solved, all_values, vectors);
  }
  return result;
}

GramEigen solve_gram(const Eigen::MatrixXf& gram, int wanted) {
  const int n = static_cast<int>(gram.rows());
  // Lanczos on the matrix as it is: a double copy (20 MB for 32 images of ResNet-50's layer4) is
  // fresh memory, which costs about as much as the product on a virtual machine.
  GramEigen result;
  if (!gram_leading_only(n, wanted) ||
      !leading_eigen(SinglePrecisionGramProduct(gram), n, wanted, gram.diagonal().cast<double>().sum(), result)) {
    return solve_gram(MatrixD(gram.cast<double>()), wanted);  // there the dense solver backs Lanczos up
  }
  return result;
}

bool gram_leading_only(int64_t side, int wanted) {
  return leading_only(static_cast<int>(side), std::min<int>(wanted, static_cast<int>(side)));
}

bool solve_gram_leading(int64_t side, const GramProduct& product, double trace, int wanted, GramEigen& result) {
  return leading_eigen(FunctionProduct(side, product), static_cast<int>(side), wanted, trace, result);
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

  // X: (rows, C), row = (image, y, x) in that order, as TorchPRISM's permute(0, 2, 3, 1) makes it,
  // centred: each channel's mean (summed in double) subtracted. Held in double, or in single
  // precision where the Gram matrix is formed in single precision anyway (see gram.hpp): a
  // capture of 64 images of ResNet-50's layer4 is 3136 x 2048, 51 MB in double. In single
  // precision it is stored the way its Gram matrix's product reads it: by rows for C x C, by
  // columns (the capture's own order) for the pixels' Gram matrix.
  const bool channel_side = channels <= rows;
  const int64_t side = std::min(rows, channels);
  const bool single_precision = side >= smallest_single_precision_gram;
  std::vector<double> mean(channels, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t n = 0; n < batch; ++n) {  // image by image, in order: the same sums on any number of threads
      const float* source = activations.data + (n * channels + c) * plane;
      // In eight lanes (prism/lane_sum.hpp): the whole PCA at batch 1 0.38-0.41 -> 0.34-0.38 ms.
      mean[c] += lane_sum(0, plane, [&](int64_t p) { return static_cast<double>(source[p]); });
    }
    mean[c] /= static_cast<double>(rows);
  }
  MatrixD x;
  Eigen::MatrixXf x_single;  // by columns
  MatrixFRows x_rows;        // by rows
  if (single_precision && channel_side) {
    x_rows.resize(rows, channels);
    // Each image's (C, H*W) planes transposed into its rows of X, 64 channels at a time: the
    // writes run along X's rows, the reads along 64 planes side by side. (Written plane by plane
    // instead, the stores strode by C floats, a power of two that maps every one to the same
    // cache set: 27 ms against 7 for 64 images of ResNet-50's layer4.)
    constexpr int64_t tile = 64;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t first = 0; first < channels; first += tile) {
        const int64_t last = std::min(channels, first + tile);
        const float* source = activations.data + n * channels * plane;
        for (int64_t p = 0; p < plane; ++p) {
          float* target = x_rows.data() + (n * plane + p) * channels;
          for (int64_t c = first; c < last; ++c) target[c] = static_cast<float>(source[c * plane + p] - mean[c]);
        }
      }
    }
  } else {
    if (single_precision) {
      x_single.resize(rows, channels);
    } else {
      x.resize(rows, channels);
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t n = 0; n < batch; ++n) {
        const float* source = activations.data + (n * channels + c) * plane;
        if (single_precision) {
          float* target = x_single.data() + c * rows + n * plane;
          for (int64_t p = 0; p < plane; ++p) target[p] = static_cast<float>(source[p] - mean[c]);
        } else {
          double* target = x.data() + c * rows + n * plane;
          for (int64_t p = 0; p < plane; ++p) target[p] = source[p] - mean[c];
        }
      }
    }
  }

  // The Gram matrix on the smaller side has the same non-zero eigenvalues, S^2.
  GramEigen eigen;
  bool solved = false;
  if (single_precision && side >= smallest_block_krylov_side && gram_leading_only(side, wanted)) {
    // A wide one's leading components come from products with the data, G = A^T A for A = X
    // (rows, C) by rows on the channel side, and on the pixel side X by columns, which is X^T
    // (C, rows) by rows. The Gram matrix is formed only if that does not converge.
    const Eigen::Map<const MatrixFRows> a = channel_side
                                                ? Eigen::Map<const MatrixFRows>(x_rows.data(), rows, channels)
                                                : Eigen::Map<const MatrixFRows>(x_single.data(), channels, rows);
    solved = leading_eigen_by_blocks(ImplicitGramProduct(a), static_cast<int>(side), wanted, eigen);
  }
  if (!solved && !single_precision) {
    eigen = solve_gram(small_gram(x, channel_side), wanted);
  } else if (!solved) {
    eigen = solve_gram(channel_side ? channel_gram(x_rows) : pixel_gram(x_single), wanted);
  }
  PrincipalComponents result;
  result.explained_variance_ratio = std::move(eigen.explained_variance_ratio);
  const int64_t k = static_cast<int64_t>(components.size());
  result.scores = Tensor({batch, k, activations.dim(2), activations.dim(3)});
  result.loadings = Tensor({k, channels});
  // In single precision, every component's product with X in one pass over X, on every thread,
  // each row's (or column's) dot products while it is in L1: on the channel side the scores X V
  // (64 images of ResNet-50's layer4: 3136 x 2048, 26 MB; one pass per component on one thread
  // took 3.4-3.6 ms), on the pixels' the loadings X^T U before scaling (8 images, 392 x 2048: all
  // that follows the eigenproblem took 0.29-0.31 ms with Eigen's products, one component at a
  // time on one thread, now 0.12-0.19).
  Eigen::MatrixXf products;  // (rows, k) scores or (C, k) loadings
  if (single_precision) {
    Eigen::MatrixXf vectors = Eigen::MatrixXf::Zero(channel_side ? channels : rows, k);
    for (int64_t j = 0; j < k; ++j) {
      if (eigen.usable(components[j])) vectors.col(j) = eigen.vectors.col(components[j]).cast<float>();
    }
    products.resize(channel_side ? rows : channels, k);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < products.rows(); ++i) {
      for (int64_t j = 0; j < k; ++j) {
        products(i, j) =
            channel_side ? x_rows.row(i).dot(vectors.col(j).transpose()) : x_single.col(i).dot(vectors.col(j));
      }
    }
  }
  for (int64_t j = 0; j < k; ++j) {
    const int component = components[j];
    if (!eigen.usable(component)) continue;
    const double singular = std::sqrt(eigen.values[component]);
    // V (length C) and U * S (length rows) of this component, from whichever side was solved.
    Eigen::VectorXd loading, score;
    if (channel_side) {
      loading = eigen.vectors.col(component);
      score = single_precision ? Eigen::VectorXd(products.col(j).cast<double>()) : x * loading;
    } else {
      score = eigen.vectors.col(component) * singular;
      loading = single_precision ? Eigen::VectorXd(products.col(j).cast<double>())
                                 : Eigen::VectorXd(x.transpose() * eigen.vectors.col(component));
      loading /= singular;
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
