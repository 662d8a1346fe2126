// layers/ref/adaptive_avg_pool2d.cpp: the mean of each of PyTorch's adaptive bins.
#include "layers/adaptive_avg_pool2d.hpp"

namespace prism {

Shape adaptive_avg_pool2d_output_shape(const AdaptiveAvgPool2dParams& p, const Shape& in) {
  return {in[0], in[1], p.output_h, p.output_w};
}

void adaptive_avg_pool2d_forward_ref(const AdaptiveAvgPool2dParams& p, ConstTensorView input, TensorView output) {
  const int64_t planes = input.dim(0) * input.dim(1), height = input.dim(2), width = input.dim(3);
  for (int64_t plane = 0; plane < planes; ++plane) {
    for (int64_t oy = 0; oy < p.output_h; ++oy) {
      const int64_t y0 = adaptive_bin_begin(oy, height, p.output_h);
      const int64_t y1 = adaptive_bin_end(oy, height, p.output_h);
      for (int64_t ox = 0; ox < p.output_w; ++ox) {
        const int64_t x0 = adaptive_bin_begin(ox, width, p.output_w);
        const int64_t x1 = adaptive_bin_end(ox, width, p.output_w);
        double sum = 0.0;
        for (int64_t y = y0; y < y1; ++y) {
          for (int64_t x = x0; x < x1; ++x) sum += input.data[(plane * height + y) * width + x];
        }
        output.data[(plane * p.output_h + oy) * p.output_w + ox] =
            static_cast<float>(sum / static_cast<double>((y1 - y0) * (x1 - x0)));
      }
    }
  }
}

}  // namespace prism
