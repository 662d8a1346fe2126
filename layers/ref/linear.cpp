// layers/ref/linear.cpp: one dot product per (row, output feature), accumulated in double.
#include "layers/linear.hpp"

namespace prism {

void linear_forward_ref(const LinearParams& p, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output) {
  const int64_t rows = input.dim(0);
  for (int64_t n = 0; n < rows; ++n) {
    for (int64_t o = 0; o < p.out_features; ++o) {
      double sum = bias ? bias[o] : 0.0;
      for (int64_t i = 0; i < p.in_features; ++i) {
        sum += static_cast<double>(input.data[n * p.in_features + i]) * weight.data[o * p.in_features + i];
      }
      const float value = static_cast<float>(sum);
      output.data[n * p.out_features + o] = relu && value < 0.0f ? 0.0f : value;
    }
  }
}

}  // namespace prism
