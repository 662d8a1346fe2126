// layers/cuda/adaptive_avg_pool2d.cu: one thread per output value, summing its bin in double as
// the reference does.
#include "engine/cuda/check.cuh"
#include "layers/adaptive_avg_pool2d.hpp"

namespace prism {
namespace {
__global__ void adaptive_avg_pool2d_kernel(const float* input, int64_t height, int64_t width, int64_t out_h,
                                           int64_t out_w, float* output, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t ox = i % out_w, oy = i / out_w % out_h, plane = i / (out_w * out_h);
    const int64_t y0 = adaptive_bin_begin(oy, height, out_h), y1 = adaptive_bin_end(oy, height, out_h);
    const int64_t x0 = adaptive_bin_begin(ox, width, out_w), x1 = adaptive_bin_end(ox, width, out_w);
    const float* source = input + plane * height * width;
    double sum = 0.0;
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = x0; x < x1; ++x) sum += source[y * width + x];
    }
    output[i] = static_cast<float>(sum / static_cast<double>((y1 - y0) * (x1 - x0)));
  }
}
}  // namespace

void adaptive_avg_pool2d_forward_cuda(const AdaptiveAvgPool2dParams& params, ConstTensorView input,
                                      TensorView output, const CudaContext& context) {
  const int64_t count = output.numel();
  adaptive_avg_pool2d_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      input.data, input.dim(2), input.dim(3), params.output_h, params.output_w, output.data, count);
  cuda_check_launch("adaptive_avg_pool2d");
}

}  // namespace prism
