// layers/cpu/batch_norm2d.cpp: unfolded evaluation-mode batch norm as one multiply-add per
// element, parallel over (image, channel) planes.
#include <vector>

#include "layers/batch_norm2d.hpp"

namespace prism {

void batch_norm2d_forward_cpu(const BatchNorm2dParams& p, const BatchNorm2dWeights& w, ConstTensorView input,
                              TensorView output) {
  std::vector<float> scale(p.channels), shift(p.channels);
  batch_norm2d_scale_shift(p, w, scale.data(), shift.data());
  const int64_t planes = input.dim(0) * p.channels, plane = input.dim(2) * input.dim(3);
#pragma omp parallel for
  for (int64_t i = 0; i < planes; ++i) {
    const float s = scale[i % p.channels], t = shift[i % p.channels];
    const float* x = input.data + i * plane;
    float* y = output.data + i * plane;
    for (int64_t j = 0; j < plane; ++j) y[j] = x[j] * s + t;
  }
}

}  // namespace prism
