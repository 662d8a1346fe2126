// layers/conv2d.hpp: torch.nn.Conv2d (any kernel, stride, padding, dilation, groups) with an
// optional bias and an optional fused ReLU. Padding is zeros, as torchvision's models use.
#pragma once

#include "engine/tensor.hpp"

namespace prism {

struct Conv2dParams {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t padding_h = 0, padding_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  bool bias = true;
};

// (N, C_in, H, W) -> (N, C_out, H_out, W_out), with PyTorch's formula
// H_out = floor((H + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1.
Shape conv2d_output_shape(const Conv2dParams& params, const Shape& input_shape);

// weight: (C_out, C_in / groups, kernel_h, kernel_w); bias: C_out values or nullptr.
// output must already have conv2d_output_shape(params, input.shape).
void conv2d_forward_ref(const Conv2dParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output);

// The fast CPU version needs scratch memory for its column matrices; the plan asks how much once
// and hands the same block to every call.
int64_t conv2d_workspace_floats_cpu(const Conv2dParams& params, const Shape& input_shape, int num_threads);
void conv2d_forward_cpu(const Conv2dParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output, float* workspace, int num_threads);

}  // namespace prism
