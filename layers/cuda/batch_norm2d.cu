// layers/cuda/batch_norm2d.cu: an unfolded batch norm as y = x * scale[c] + shift[c], with scale
// and shift computed on the host by batch_norm2d_scale_shift when the plan is made.
#include "engine/cuda/check.cuh"
#include "layers/batch_norm2d.hpp"

namespace prism {
namespace {
__global__ void scale_shift_kernel(const float* input, const float* scale, const float* shift, int64_t channels,
                                   int64_t plane, float* output, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = i / plane % channels;
    output[i] = __fadd_rn(__fmul_rn(input[i], scale[c]), shift[c]);  // rounded as the CPU's x * s + t
  }
}
}  // namespace

void batch_norm2d_forward_cuda(const BatchNorm2dParams& params, const float* scale, const float* shift,
                               ConstTensorView input, TensorView output, const CudaContext& context) {
  const int64_t count = input.numel();
  scale_shift_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      input.data, scale, shift, params.channels, input.dim(2) * input.dim(3), output.data, count);
  cuda_check_launch("batch_norm2d");
}

}  // namespace prism
