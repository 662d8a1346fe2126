// layers/ref/conv2d.cpp: the readable definition of a 2-D convolution, six nested loops and
// nothing clever. Every fast convolution is tested against this one.
#include <algorithm>

#include "layers/conv2d.hpp"

namespace prism {

Shape conv2d_output_shape(const Conv2dParams& p, const Shape& in) {
  auto out_size = [](int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation) {
    // Floor division, right for a negative span too (a kernel larger than the padded input).
    const int64_t span = size + 2 * padding - dilation * (kernel - 1) - 1;
    return (span >= 0 ? span / stride : -((-span + stride - 1) / stride)) + 1;
  };
  return {in[0], p.out_channels, out_size(in[2], p.kernel_h, p.stride_h, p.padding_h, p.dilation_h),
          out_size(in[3], p.kernel_w, p.stride_w, p.padding_w, p.dilation_w)};
}

void conv2d_forward_ref(const Conv2dParams& p, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output) {
  const int64_t batch = input.dim(0), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3);
  const int64_t in_per_group = p.in_channels / p.groups;
  const int64_t out_per_group = p.out_channels / p.groups;

  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t oc = 0; oc < p.out_channels; ++oc) {
      const int64_t group = oc / out_per_group;
      for (int64_t oy = 0; oy < out_h; ++oy) {
        for (int64_t ox = 0; ox < out_w; ++ox) {
          // Accumulate in double so the reference is more exact than any fast variant.
          double sum = bias ? bias[oc] : 0.0;
          for (int64_t ic = 0; ic < in_per_group; ++ic) {
            const int64_t channel = group * in_per_group + ic;
            for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
              const int64_t iy = oy * p.stride_h - p.padding_h + ky * p.dilation_h;
              if (iy < 0 || iy >= height) continue;  // zero padding
              for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
                const int64_t ix = ox * p.stride_w - p.padding_w + kx * p.dilation_w;
                if (ix < 0 || ix >= width) continue;
                const float x = input.data[((n * p.in_channels + channel) * height + iy) * width + ix];
                const float w = weight.data[((oc * in_per_group + ic) * p.kernel_h + ky) * p.kernel_w + kx];
                sum += static_cast<double>(x) * w;
              }
            }
          }
          float value = static_cast<float>(sum);
          if (relu) value = std::max(value, 0.0f);
          output.data[((n * p.out_channels + oc) * out_h + oy) * out_w + ox] = value;
        }
      }
    }
  }
}

}  // namespace prism
