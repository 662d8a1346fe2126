// layers/cpu/adaptive_avg_pool2d.cpp: adaptive average pooling parallel over planes, summing in
// float like PyTorch's CPU kernel.
#include "layers/adaptive_avg_pool2d.hpp"

namespace prism {

void adaptive_avg_pool2d_forward_cpu(const AdaptiveAvgPool2dParams& p, ConstTensorView input, TensorView output) {
  const int64_t planes = input.dim(0) * input.dim(1), height = input.dim(2), width = input.dim(3);
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* in = input.data + plane * height * width;
    float* out = output.data + plane * p.output_h * p.output_w;
    for (int64_t oy = 0; oy < p.output_h; ++oy) {
      const int64_t y0 = adaptive_bin_begin(oy, height, p.output_h);
      const int64_t y1 = adaptive_bin_end(oy, height, p.output_h);
      for (int64_t ox = 0; ox < p.output_w; ++ox) {
        const int64_t x0 = adaptive_bin_begin(ox, width, p.output_w);
        const int64_t x1 = adaptive_bin_end(ox, width, p.output_w);
        float sum = 0.0f;
        for (int64_t y = y0; y < y1; ++y) {
          for (int64_t x = x0; x < x1; ++x) sum += in[y * width + x];
        }
        out[oy * p.output_w + ox] = sum / static_cast<float>((y1 - y0) * (x1 - x0));
      }
    }
  }
}

}  // namespace prism
