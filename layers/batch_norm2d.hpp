// layers/batch_norm2d.hpp: torch.nn.BatchNorm2d in evaluation mode (running statistics), as a
// per-channel scale and shift, and its folding into the convolution before it.
#pragma once

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"

namespace prism {

struct BatchNorm2dParams {
  int64_t channels = 0;
  float eps = 1e-5f;  // torchvision's models all use PyTorch's default
};

// The state_dict's four vectors, each of `channels` values.
struct BatchNorm2dWeights {
  const float* weight;
  const float* bias;
  const float* running_mean;
  const float* running_var;
};

// y = (x - mean) / sqrt(var + eps) * weight + bias, written as y = x * scale + shift.
void batch_norm2d_scale_shift(const BatchNorm2dParams& params, const BatchNorm2dWeights& weights, float* scale,
                              float* shift);

// Folds BN into the convolution before it: W'[c] = W[c] * scale[c], b'[c] = b[c] * scale[c] +
// shift[c]. conv_weight is (C_out, ...) and changed in place; conv_bias has C_out values (zeros
// for a convolution without bias) and is changed in place.
void batch_norm2d_fold_into_conv(const BatchNorm2dParams& params, const BatchNorm2dWeights& weights,
                                 TensorView conv_weight, float* conv_bias);

// Unfolded BN, used when the convolution's own output is a requested tap. Input and output may
// be the same memory.
void batch_norm2d_forward_ref(const BatchNorm2dParams& params, const BatchNorm2dWeights& weights, ConstTensorView input,
                              TensorView output);
void batch_norm2d_forward_cpu(const BatchNorm2dParams& params, const BatchNorm2dWeights& weights, ConstTensorView input,
                              TensorView output);
// On the GPU: scale and shift (batch_norm2d_scale_shift's, copied to the GPU) in device memory.
void batch_norm2d_forward_cuda(const BatchNorm2dParams& params, const float* scale, const float* shift,
                               ConstTensorView input, TensorView output, const CudaContext& context);

}  // namespace prism
