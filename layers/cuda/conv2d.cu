// layers/cuda/conv2d.cu: convolution as im2col + cuBLAS. The column matrix of a chunk of images
// is built in the workspace; then, per group, one strided-batched product over the chunk's
// images writes each image's output in place (NCHW needs no reordering); then one pass adds
// bias and residual and applies the ReLU. 1x1 stride-1 convolutions read the input directly.
#include <algorithm>

#include "engine/cuda/check.cuh"
#include "layers/conv2d.hpp"
#include "layers/cuda/epilogue.cuh"

namespace prism {
namespace {

constexpr int64_t workspace_budget_floats = int64_t{1} << 26;  // 256 MiB of column matrices at most

bool is_pointwise(const Conv2dParams& p) {
  return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 && p.stride_w == 1 && p.padding_h == 0 &&
         p.padding_w == 0;
}

// Floats of one image's column matrix: (C_in * kh * kw, out_h * out_w).
int64_t columns_per_image(const Conv2dParams& p, const Shape& input_shape) {
  const Shape out = conv2d_output_shape(p, input_shape);
  return p.in_channels * p.kernel_h * p.kernel_w * out[2] * out[3];
}

int64_t images_per_chunk(const Conv2dParams& p, const Shape& input_shape) {
  return std::clamp<int64_t>(workspace_budget_floats / columns_per_image(p, input_shape), 1, input_shape[0]);
}

// columns (images, C_in * kh * kw, out_h * out_w): row (c, ky, kx) holds the input pixel each
// output pixel sees through that tap, zero where it falls in the padding.
__global__ void im2col_kernel(Conv2dParams p, const float* input, int64_t height, int64_t width, int64_t out_h,
                              int64_t out_w, float* columns, int64_t count) {
  const int64_t out_pixels = out_h * out_w, taps = p.kernel_h * p.kernel_w;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pixel = i % out_pixels, row = i / out_pixels;  // row = (n * C_in + c) * taps + tap
    const int64_t tap = row % taps, plane = row / taps;          // plane = n * C_in + c
    const int64_t ox = pixel % out_w, oy = pixel / out_w;
    const int64_t iy = oy * p.stride_h - p.padding_h + tap / p.kernel_w * p.dilation_h;
    const int64_t ix = ox * p.stride_w - p.padding_w + tap % p.kernel_w * p.dilation_w;
    columns[i] = iy >= 0 && iy < height && ix >= 0 && ix < width ? input[(plane * height + iy) * width + ix] : 0.0f;
  }
}

}  // namespace

int64_t conv2d_workspace_floats_cuda(const Conv2dParams& p, const Shape& input_shape) {
  if (is_pointwise(p)) return 0;
  return images_per_chunk(p, input_shape) * columns_per_image(p, input_shape);
}

void conv2d_forward_cuda(const Conv2dParams& p, ConstTensorView input, ConstTensorView weight, const float* bias,
                         const float* residual, bool relu, TensorView output, float* workspace,
                         const CudaContext& context) {
  const int64_t batch = input.dim(0), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3), out_pixels = out_h * out_w;
  const int64_t in_per_group = p.in_channels / p.groups, out_per_group = p.out_channels / p.groups;
  const int64_t depth = in_per_group * p.kernel_h * p.kernel_w;  // K of each group's product
  const bool pointwise = is_pointwise(p);
  const int64_t chunk = pointwise ? batch : images_per_chunk(p, input.shape);
  const int64_t image_columns = p.in_channels * p.kernel_h * p.kernel_w * out_pixels;
  const float one = 1.0f, zero = 0.0f;

  for (int64_t first = 0; first < batch; first += chunk) {
    const int64_t images = std::min(chunk, batch - first);
    const float* columns = input.data + first * p.in_channels * height * width;
    if (!pointwise) {
      const int64_t count = images * image_columns;
      im2col_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(
          p, columns, height, width, out_h, out_w, workspace, count);
      cuda_check_launch("im2col");
      columns = workspace;
    }
    // Per image: output (C_out/g, pixels) = W_g (C_out/g, K) * columns_g (K, pixels), row-major;
    // to column-major cuBLAS that is output^T = columns_g^T * W_g^T, with no transposes.
    for (int64_t group = 0; group < p.groups; ++group) {
      cublas_check(cublasSgemmStridedBatched(
                       blas_of(context), CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(out_pixels),
                       static_cast<int>(out_per_group), static_cast<int>(depth), &one,
                       columns + group * depth * out_pixels, static_cast<int>(out_pixels), image_columns,
                       weight.data + group * out_per_group * depth, static_cast<int>(depth), 0, &zero,
                       output.data + (first * p.out_channels + group * out_per_group) * out_pixels,
                       static_cast<int>(out_pixels), p.out_channels * out_pixels, static_cast<int>(images)),
                   "convolution product");
    }
  }
  apply_epilogue(output.data, bias, p.out_channels, out_pixels, residual, relu, output.numel(), context);
}

}  // namespace prism
