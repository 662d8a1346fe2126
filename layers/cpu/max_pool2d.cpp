// layers/cpu/max_pool2d.cpp: max pooling parallel over (image, channel) planes, with the window's
// valid range worked out once per output row and column instead of tested per tap.
#include <algorithm>
#include <limits>

#include "layers/max_pool2d.hpp"

namespace prism {

void max_pool2d_forward_cpu(const MaxPool2dParams& p, ConstTensorView input, TensorView output) {
  const int64_t planes = input.dim(0) * input.dim(1), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3);
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* in = input.data + plane * height * width;
    float* out = output.data + plane * out_h * out_w;
    for (int64_t oy = 0; oy < out_h; ++oy) {
      const int64_t y0 = oy * p.stride_h - p.padding_h;
      // First and one-past-last kernel rows that land inside the image.
      const int64_t ky_begin = y0 >= 0 ? 0 : (-y0 + p.dilation_h - 1) / p.dilation_h;
      const int64_t ky_end = std::min(p.kernel_h, (height - y0 + p.dilation_h - 1) / p.dilation_h);
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const int64_t x0 = ox * p.stride_w - p.padding_w;
        const int64_t kx_begin = x0 >= 0 ? 0 : (-x0 + p.dilation_w - 1) / p.dilation_w;
        const int64_t kx_end = std::min(p.kernel_w, (width - x0 + p.dilation_w - 1) / p.dilation_w);
        float best = -std::numeric_limits<float>::infinity();
        for (int64_t ky = ky_begin; ky < ky_end; ++ky) {
          const float* row = in + (y0 + ky * p.dilation_h) * width + x0;
          for (int64_t kx = kx_begin; kx < kx_end; ++kx) {
            const float value = row[kx * p.dilation_w];
            if (value > best || value != value) best = value;
          }
        }
        out[oy * out_w + ox] = best;
      }
    }
  }
}

}  // namespace prism
