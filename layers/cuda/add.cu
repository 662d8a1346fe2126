// layers/cuda/add.cu: the residual sum a + b with an optional ReLU; the output may be either input.
#include "engine/cuda/check.cuh"
#include "layers/add.hpp"

namespace prism {
namespace {
__global__ void add_kernel(const float* a, const float* b, bool relu, float* output, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const float sum = a[i] + b[i];
    output[i] = relu && sum < 0.0f ? 0.0f : sum;  // as layers/ref/add.cpp
  }
}
}  // namespace

void add_forward_cuda(ConstTensorView a, ConstTensorView b, bool relu, TensorView output, const CudaContext& context) {
  const int64_t count = output.numel();
  add_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(a.data, b.data, relu, output.data,
                                                                                     count);
  cuda_check_launch("add");
}

}  // namespace prism
