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

void max_pool2d_forward_ref(const MaxPool2dParams& params, ConstTensorView input, TensorView output);
void max_pool2d_forward_cpu(const MaxPool2dParams& params, ConstTensorView input, TensorView output);
void max_pool2d_forward_cuda(const MaxPool2dParams& params, ConstTensorView input, TensorView output,
                             const CudaContext& context);

}  // namespace prism
