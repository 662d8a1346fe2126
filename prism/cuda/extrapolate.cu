// prism/cuda/extrapolate.cu: PyTorch's bilinear interpolation (align_corners=False) on the GPU,
// with the multiplication of gradual extrapolation fused in. Every weight and product is rounded
// one operation at a time (the __f*_rn intrinsics, which nvcc never contracts into a fused
// multiply-add), as the CPU version computes them, so both give the same floats.
#include "engine/cuda/check.cuh"
#include "prism/cuda/kernels.hpp"

namespace prism {
namespace {

// Source index pair and weights for output index i of an axis, as prism/extrapolate.cpp's
// interpolation().
struct Taps {
  int64_t low, high;
  float low_weight, high_weight;
};

__device__ Taps axis_taps(int64_t i, int64_t in, int64_t out) {
  const float scale = __fdiv_rn(static_cast<float>(in), static_cast<float>(out));
  const float source = fmaxf(__fsub_rn(__fmul_rn(scale, __fadd_rn(static_cast<float>(i), 0.5f)), 0.5f), 0.0f);
  const int64_t low = min(static_cast<int64_t>(source), in - 1);
  const float fraction = __fsub_rn(source, static_cast<float>(low));
  return {low, low < in - 1 ? low + 1 : low, __fsub_rn(1.0f, fraction), fraction};
}

__global__ void resize_bilinear_kernel(const float* maps, int64_t k, int64_t in_h, int64_t in_w, float* out,
                                       int64_t out_h, int64_t out_w, const float* factor, int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t x = i % out_w, y = i / out_w % out_h, plane = i / (out_w * out_h);
    const Taps row = axis_taps(y, in_h, out_h), column = axis_taps(x, in_w, out_w);
    const float* top = maps + (plane * in_h + row.low) * in_w;
    const float* bottom = maps + (plane * in_h + row.high) * in_w;
    const float upper = __fadd_rn(__fmul_rn(column.low_weight, top[column.low]),
                                  __fmul_rn(column.high_weight, top[column.high]));
    const float lower = __fadd_rn(__fmul_rn(column.low_weight, bottom[column.low]),
                                  __fmul_rn(column.high_weight, bottom[column.high]));
    float value = __fadd_rn(__fmul_rn(row.low_weight, upper), __fmul_rn(row.high_weight, lower));
    if (factor) value = __fmul_rn(value, factor[plane / k * out_h * out_w + y * out_w + x]);
    out[i] = value;
  }
}

}  // namespace

void resize_bilinear_cuda(const float* maps, int64_t images, int64_t k, int64_t in_h, int64_t in_w, float* out,
                          int64_t out_h, int64_t out_w, const float* factor, const CudaContext& context) {
  const int64_t count = images * k * out_h * out_w;
  resize_bilinear_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
      maps, k, in_h, in_w, out, out_h, out_w, factor, count);
  cuda_check_launch("bilinear resize");
}

}  // namespace prism
