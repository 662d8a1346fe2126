// layers/max_pool2d.hpp: torch.nn.MaxPool2d (kernel, stride, padding, dilation, ceil_mode).
// Padding counts as -infinity, as in PyTorch: a window never picks a padded zero.
#pragma once

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"

namespace prism {

struct MaxPool2dParams {
  int64_t kernel_h = 2, kernel_w = 2;
  int64_t stride_h = 2, stride_w = 2;
  int64_t padding_h = 0, padding_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  bool ceil_mode = false;
};

// PyTorch's pooling_output_shape: with ceil_mode the last window must start inside the input or
// its left padding, otherwise it is dropped.
Shape max_pool2d_output_shape(const MaxPool2dParams& params, const Shape& input_shape);

// The larger of the best value so far and the next one, NaN winning: PyTorch propagates NaN through
// max pooling. Every max pool here compares so (the reference, the CPU and CUDA kernels, the pools
// fused into convolutions).
PRISM_HOST_DEVICE inline float nan_max(float best, float value) {
  return (value > best || value != value) ? value : best;
}

// The window at output (oy, ox) of a (height, width) input: visit(iy, ix) for each of its taps
// inside the input, row by row. Padding is never visited, so never picked.
template <typename Visit>
PRISM_HOST_DEVICE inline void max_pool2d_for_each_tap(const MaxPool2dParams& p, int64_t height, int64_t width,
                                                      int64_t oy, int64_t ox, Visit visit) {
  for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
    const int64_t iy = oy * p.stride_h - p.padding_h + ky * p.dilation_h;
    if (iy < 0 || iy >= height) continue;
    for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
      const int64_t ix = ox * p.stride_w - p.padding_w + kx * p.dilation_w;
      if (ix >= 0 && ix < width) visit(iy, ix);
    }
  }
}

// One output value: the maximum over the window at (oy, ox) of one (height, width) plane (nan_max).
// The reference and the CUDA kernel share it; the direct convolution's fused pool walks the same
// windows.
PRISM_HOST_DEVICE inline float max_pool2d_window(const MaxPool2dParams& p, const float* plane, int64_t height,
                                                 int64_t width, int64_t oy, int64_t ox) {
  float best = -__builtin_huge_valf();
  max_pool2d_for_each_tap(p, height, width, oy, ox,
                          [&](int64_t iy, int64_t ix) { best = nan_max(best, plane[iy * width + ix]); });
  return best;
}

void max_pool2d_forward_ref(const MaxPool2dParams& params, ConstTensorView input, TensorView output);
void max_pool2d_forward_cpu(const MaxPool2dParams& params, ConstTensorView input, TensorView output);
void max_pool2d_forward_cuda(const MaxPool2dParams& params, ConstTensorView input, TensorView output,
                             const CudaContext& context);

}  // namespace prism
