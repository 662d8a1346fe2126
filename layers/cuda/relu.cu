// layers/cuda/relu.cu: max(0, x), element-wise; input and output may be the same memory.
#include "engine/cuda/check.cuh"
#include "layers/relu.hpp"

namespace prism {
namespace {
__global__ void relu_kernel(const float* input, float* output, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const float x = input[i];
    output[i] = x > 0.0f ? x : 0.0f;  // as layers/ref/relu.cpp
  }
}
}  // namespace

void relu_forward_cuda(ConstTensorView input, TensorView output, const CudaContext& context) {
  const int64_t count = input.numel();
  relu_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(input.data, output.data, count);
  cuda_check_launch("relu");
}

}  // namespace prism
