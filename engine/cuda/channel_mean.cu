// engine/cuda/channel_mean.cu: channel_mean on the GPU, one thread per pixel summing its channels
// in double in the CPU's order, so both backends give the same float.
#include "engine/cuda/check.cuh"
#include "engine/tensor.hpp"

namespace prism {
namespace {
__global__ void channel_mean_kernel(const float* activations, int64_t channels, int64_t plane, float* means,
                                    int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / plane, p = i % plane;
    const float* source = activations + n * channels * plane + p;
    double sum = 0.0;
    for (int64_t c = 0; c < channels; ++c) sum += source[c * plane];
    means[i] = static_cast<float>(sum / channels);
  }
}
}  // namespace

void channel_mean_cuda(ConstTensorView activations, TensorView means, const CudaContext& context) {
  const int64_t plane = activations.dim(2) * activations.dim(3), count = activations.dim(0) * plane;
  channel_mean_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      activations.data, activations.dim(1), plane, means.data, count);
  cuda_check_launch("channel_mean");
}

}  // namespace prism
