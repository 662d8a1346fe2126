// layers/ref/batch_norm2d.cpp: evaluation-mode batch norm, its scale/shift form and its folding
// into a convolution. The formula is PyTorch's; the double arithmetic keeps folding exact to fp32.
#include <cmath>
#include <vector>

#include "layers/batch_norm2d.hpp"

namespace prism {

void batch_norm2d_scale_shift(const BatchNorm2dParams& p, const BatchNorm2dWeights& w, float* scale, float* shift) {
  for (int64_t c = 0; c < p.channels; ++c) {
    const double s = w.weight[c] / std::sqrt(static_cast<double>(w.running_var[c]) + p.eps);
    scale[c] = static_cast<float>(s);
    shift[c] = static_cast<float>(w.bias[c] - w.running_mean[c] * s);
  }
}

void batch_norm2d_fold_into_conv(const BatchNorm2dParams& p, const BatchNorm2dWeights& w, TensorView conv_weight,
                                 float* conv_bias) {
  const int64_t per_channel = conv_weight.numel() / conv_weight.dim(0);
  for (int64_t c = 0; c < p.channels; ++c) {
    const double s = w.weight[c] / std::sqrt(static_cast<double>(w.running_var[c]) + p.eps);
    float* filter = conv_weight.data + c * per_channel;
    for (int64_t i = 0; i < per_channel; ++i) filter[i] = static_cast<float>(filter[i] * s);
    conv_bias[c] = static_cast<float>((conv_bias[c] - w.running_mean[c]) * s + w.bias[c]);
  }
}

void batch_norm2d_forward_ref(const BatchNorm2dParams& p, const BatchNorm2dWeights& w, ConstTensorView input,
                              TensorView output) {
  const int64_t batch = input.dim(0), plane = input.dim(2) * input.dim(3);
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < p.channels; ++c) {
      const double inv_std = 1.0 / std::sqrt(static_cast<double>(w.running_var[c]) + p.eps);
      for (int64_t i = 0; i < plane; ++i) {
        const int64_t at = (n * p.channels + c) * plane + i;
        output.data[at] = static_cast<float>((input.data[at] - w.running_mean[c]) * inv_std * w.weight[c] + w.bias[c]);
      }
    }
  }
}

}  // namespace prism
