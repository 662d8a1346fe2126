// layers/ref/max_pool2d.cpp: the maximum over each window, visiting every tap.
#include <limits>

#include "layers/max_pool2d.hpp"

namespace prism {

namespace {
int64_t pooled_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode) {
  // Floor and ceiling division that stay right for a negative span (an input smaller than the
  // window), which C++'s truncating division would round towards zero.
  const int64_t span = size + 2 * padding - dilation * (kernel - 1) - 1;
  const int64_t floor_div = span >= 0 ? span / stride : -((-span + stride - 1) / stride);
  const int64_t ceil_div = span >= 0 ? (span + stride - 1) / stride : -(-span / stride);
  int64_t out = (ceil_mode ? ceil_div : floor_div) + 1;
  if (ceil_mode && (out - 1) * stride >= size + padding) --out;
  return out;
}
}  // namespace

Shape max_pool2d_output_shape(const MaxPool2dParams& p, const Shape& in) {
  return {in[0], in[1], pooled_size(in[2], p.kernel_h, p.stride_h, p.padding_h, p.dilation_h, p.ceil_mode),
          pooled_size(in[3], p.kernel_w, p.stride_w, p.padding_w, p.dilation_w, p.ceil_mode)};
}

void max_pool2d_forward_ref(const MaxPool2dParams& p, ConstTensorView input, TensorView output) {
  const int64_t planes = input.dim(0) * input.dim(1), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3);
  for (int64_t plane = 0; plane < planes; ++plane) {
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const float best = max_pool2d_window(p, input.data + plane * height * width, height, width, oy, ox);
        output.data[(plane * out_h + oy) * out_w + ox] = best;
      }
    }
  }
}

}  // namespace prism
