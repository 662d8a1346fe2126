// layers/cuda/max_pool2d.cu: one thread per output value, visiting its window with the same
// function as the reference (layers/max_pool2d.hpp).
#include "engine/cuda/check.cuh"
#include "layers/max_pool2d.hpp"

namespace prism {
namespace {
__global__ void max_pool2d_kernel(MaxPool2dParams p, const float* input, int64_t height, int64_t width,
                                  int64_t out_h, int64_t out_w, float* output, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ox = i % out_w, oy = i / out_w % out_h, plane = i / (out_w * out_h);
    output[i] = max_pool2d_window(p, input + plane * height * width, height, width, oy, ox);
  }
}
}  // namespace

void max_pool2d_forward_cuda(const MaxPool2dParams& params, ConstTensorView input, TensorView output,
                             const CudaContext& context) {
  const int64_t count = output.numel();
  max_pool2d_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      params, input.data, input.dim(2), input.dim(3), output.dim(2), output.dim(3), output.data, count);
  cuda_check_launch("max_pool2d");
}

}  // namespace prism
