// layers/cpu/linear.cpp: Linear as one Eigen GEMM, (N, in) x (in, out), then bias and ReLU.
#include <Eigen/Core>
#include <algorithm>

#include "layers/linear.hpp"

namespace prism {

void linear_forward_cpu(const LinearParams& p, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output) {
  using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int64_t rows = input.dim(0);
  Eigen::Map<const RowMatrix> x(input.data, rows, p.in_features);             // (N, in)
  Eigen::Map<const RowMatrix> w(weight.data, p.out_features, p.in_features);  // (out, in)
  Eigen::Map<RowMatrix> y(output.data, rows, p.out_features);                 // (N, out)
  y.noalias() = x * w.transpose();
  for (int64_t n = 0; n < rows; ++n) {
    float* row = output.data + n * p.out_features;
    for (int64_t o = 0; o < p.out_features; ++o) {
      const float value = row[o] + (bias ? bias[o] : 0.0f);
      row[o] = relu ? std::max(value, 0.0f) : value;
    }
  }
}

}  // namespace prism
