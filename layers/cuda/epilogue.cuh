// layers/cuda/epilogue.cuh: what follows a cuBLAS product in a convolution or linear layer, in the
// CPU epilogue's order: + bias[channel], + residual, then ReLU. One pass over the output.
#pragma once

#include "engine/cuda/check.cuh"

namespace prism {

// values: (outer, channels, plane) in place; bias (channels) and residual (like values) optional.
static __global__ void bias_residual_relu_kernel(float* values, const float* bias, int64_t channels, int64_t plane,
                                                 const float* residual, bool relu, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    float x = values[i];
    if (bias) x += bias[i / plane % channels];
    if (residual) x += residual[i];
    if (relu) x = x > 0.0f ? x : 0.0f;
    values[i] = x;
  }
}

inline void apply_epilogue(float* values, const float* bias, int64_t channels, int64_t plane, const float* residual,
                           bool relu, int64_t count, const CudaContext& context) {
  if (!bias && !residual && !relu) return;
  bias_residual_relu_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      values, bias, channels, plane, residual, relu, count);
  cuda_check_launch("bias, residual and ReLU");
}

}  // namespace prism
