// layers/conv2d.hpp: torch.nn.Conv2d (any kernel, stride, padding, dilation, groups) with an
// optional bias and an optional fused ReLU. Padding is zeros, as torchvision's models use.
#pragma once

#include <optional>
#include <vector>

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"
#include "layers/max_pool2d.hpp"
#ifndef __CUDACC__
#include "layers/cpu/gemm.hpp"  // GCC vector extensions: not for nvcc, which needs none of it
#endif

namespace prism {

struct Conv2dParams {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t padding_h = 0, padding_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  bool bias = true;
};

// (N, C_in, H, W) -> (N, C_out, H_out, W_out), with PyTorch's formula
// H_out = floor((H + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1.
Shape conv2d_output_shape(const Conv2dParams& params, const Shape& input_shape);

// weight: (C_out, C_in / groups, kernel_h, kernel_w); bias: C_out values or nullptr.
// output must already have conv2d_output_shape(params, input.shape).
void conv2d_forward_ref(const Conv2dParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output);

// On the GPU (every pointer device memory): the weight as torch stores it (BN folded), im2col
// over as many images at a time as the workspace holds, one cuBLAS product per image and group
// (batched), then bias, residual and ReLU in one pass. 1x1 stride-1 convolutions need no im2col.
// The product is written before the residual is added: the residual may not be the output.
int64_t conv2d_workspace_floats_cuda(const Conv2dParams& params, const Shape& input_shape);
void conv2d_forward_cuda(const Conv2dParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                         const float* residual, bool relu, TensorView output, float* workspace,
                         const CudaContext& context);

#ifndef __CUDACC__
// The fast CPU version prepares its weights once per plan, for one of three algorithms that the
// plan chooses by shape (conv2d_choose_algorithm_cpu):
// - im2col_gemm: im2col, then the packed GEMM (weights packed as one matrix per group);
// - winograd: 3x3 stride-1 convolutions with enough channels and pixels, by Winograd's
//   F(4x4, 3x3) (weights transformed into 36 packed matrices);
// - winograd_2x2: the same convolutions on images too small for F(4x4, 3x3) to pay (ResNet's 14x14
//   stage at batch 1), by F(2x2, 3x3) on the direct kernel (weights transformed into 16 matrices
//   packed per channel block as the direct kernel's are);
// - direct: small images (few output pixels), read in place (weights packed per channel block).
// It needs scratch memory for column matrices, transformed tiles or padded images; the plan asks
// how much once and hands the same block to every call.
enum class Conv2dAlgorithm { im2col_gemm, winograd, winograd_2x2, direct };
const char* conv2d_algorithm_name(Conv2dAlgorithm algorithm);

struct Conv2dDirectWeights {
  Tensor data;                       // (groups, channel blocks, depth, block channels)
  std::vector<int64_t> tap_offsets;  // depth: where tap (ic, ky, kx) reads in the padded input
};

struct Conv2dPreparedCpu {
  Conv2dAlgorithm algorithm = Conv2dAlgorithm::im2col_gemm;
  std::vector<PackedMatrix> matrices;  // im2col_gemm: one per group; winograd: 36
  Conv2dDirectWeights direct;          // direct and winograd_2x2
  // direct, or winograd with a 2x2 pool of stride 2: a max pool fused after the bias and ReLU
  // (ResNet's stem, VGG's pools), so that the output is the pool's and the convolution's own never
  // leaves the cache. Set by the plan.
  std::optional<MaxPool2dParams> max_pool;
};
// What the fast path runs for this shape on num_threads threads (allow_winograd: whether the plan
// permits Winograd's slightly larger rounding error; output_means: whether the output is wanted as
// its mean over channels too, a PRISM capture, which the GEMM path can write as it goes).
Conv2dAlgorithm conv2d_choose_algorithm_cpu(const Conv2dParams& params, const Shape& input_shape, bool allow_winograd,
                                            int num_threads, GemmPrecision precision = GemmPrecision::fp32,
                                            bool output_means = false);
// algorithm winograd needs conv2d_winograd_applies(params, input_shape), winograd_2x2
// conv2d_winograd_2x2_applies(params); the others take any shape.
// precision bf16 (PlanOptions::bf16) packs im2col_gemm's weights in bfloat16; the others stay
// fp32 (Winograd's transformed tiles in bf16 came out 12x less accurate than im2col's GEMM in
// bf16: 2.4% against 0.2% normalised error on the tests' shapes).
Conv2dPreparedCpu conv2d_prepare_cpu(const Conv2dParams& params, ConstTensorView weight, const Shape& input_shape,
                                     Conv2dAlgorithm algorithm, GemmPrecision precision = GemmPrecision::fp32);
int64_t conv2d_workspace_floats_cpu(const Conv2dParams& params, const Conv2dPreparedCpu& prepared,
                                    const Shape& input_shape, int num_threads);
// residual: a tensor shaped like the output added before the ReLU (a ResNet block's shortcut,
// fused into the block's last convolution), or nullptr. It may be the output itself (the sum
// written over the shortcut, which saves a stream of fresh memory; never the input). With
// prepared.max_pool, output has the pool's shape, and channel_means (or nullptr) receives the
// convolution's own output's mean over channels, (N, 1, H, W), where
// conv2d_direct_writes_channel_means (or conv2d_winograd_writes_channel_means) says it can;
// without, channel_means receives the output's mean over channels where
// conv2d_gemm_writes_channel_means says it can.
void conv2d_forward_cpu(const Conv2dParams& params, ConstTensorView input, const Conv2dPreparedCpu& prepared,
                        const float* bias, const float* residual, bool relu, TensorView output, float* workspace,
                        int num_threads, float* channel_means = nullptr);
// Whether the GEMM path (im2col_gemm) can write its output's mean over channels, each task the
// means of its own pixels while their results are in cache (a PRISM capture of a ResNet stage's
// output, which a pass of its own reads back from memory): one group, and tasks of every output
// channel, enough for every thread (else the threads share out each task's channels).
bool conv2d_gemm_writes_channel_means(const Conv2dParams& params, const Shape& input_shape, int num_threads);

// The direct path on its own (layers/cpu/conv2d_direct.cpp), for conv2d_forward_cpu.
Conv2dDirectWeights conv2d_direct_pack_weights(const Conv2dParams& params, const float* weight,
                                               const Shape& input_shape);
// pool: a max pool after the bias and ReLU (output is then the pool's; no residual), or nullptr.
// With a pool, channel_means (or nullptr) receives the mean over channels of the convolution's
// output (after bias and ReLU), which is never stored whole: a PRISM capture of ResNet's stem.
int64_t conv2d_direct_workspace_floats(const Conv2dParams& params, const Shape& input_shape, int num_threads,
                                       const MaxPool2dParams* pool = nullptr);
void conv2d_direct_forward_cpu(const Conv2dParams& params, ConstTensorView input, const Conv2dDirectWeights& weights,
                               const float* bias, const float* residual, bool relu, TensorView output, float* workspace,
                               int num_threads, const MaxPool2dParams* pool = nullptr, float* channel_means = nullptr);
// Whether it can write those means for this convolution and pool: one block of channels (a task
// sees all of a pixel's channels), and the pool's windows read every row of the convolution's
// output (each row's mean is written by the task whose windows start from it).
bool conv2d_direct_writes_channel_means(const Conv2dParams& params, const MaxPool2dParams& pool,
                                        const Shape& input_shape);

// The Winograd path on its own (layers/cpu/conv2d_winograd.cpp), for conv2d_forward_cpu and tests.
bool conv2d_winograd_applies(const Conv2dParams& params, const Shape& input_shape);
int64_t conv2d_winograd_tiles(const Conv2dParams& params, const Shape& input_shape);  // 4x4 output tiles
std::vector<PackedMatrix> conv2d_winograd_pack_weights(const Conv2dParams& params, const float* weight);
int64_t conv2d_winograd_workspace_floats(const Conv2dParams& params, const Shape& input_shape, int num_threads);
// pool: a 2x2 max pool of stride 2 after the bias and ReLU (VGG's; conv2d_winograd_fuses_max_pool),
// whose output `output` then is, or nullptr: each 4x4 tile of results pools into 2x2 before
// anything is stored. With a pool, channel_means (or nullptr) receives the mean over channels of
// the convolution's output, where conv2d_winograd_writes_channel_means says it can.
void conv2d_winograd_forward_cpu(const Conv2dParams& params, ConstTensorView input,
                                 const std::vector<PackedMatrix>& transformed_weights, const float* bias,
                                 const float* residual, bool relu, TensorView output, float* workspace, int num_threads,
                                 const MaxPool2dParams* pool = nullptr, float* channel_means = nullptr);
bool conv2d_winograd_fuses_max_pool(const MaxPool2dParams& pool);
// Whether it can write those means: each thread takes chunks of tiles of its own, all their
// channels (not where the threads share each chunk: small images at batch 1).
bool conv2d_winograd_writes_channel_means(const Conv2dParams& params, const Shape& input_shape, int num_threads);

// Winograd's F(2x2, 3x3) on its own (layers/cpu/conv2d_winograd_2x2.cpp): any 3x3 stride-1
// convolution without dilation or groups.
bool conv2d_winograd_2x2_applies(const Conv2dParams& params);
int64_t conv2d_winograd_2x2_image_tiles(const Conv2dParams& params, const Shape& input_shape);  // 2x2, per image
Conv2dDirectWeights conv2d_winograd_2x2_pack_weights(const Conv2dParams& params, const float* weight,
                                                     const Shape& input_shape);
int64_t conv2d_winograd_2x2_workspace_floats(const Conv2dParams& params, const Shape& input_shape, int num_threads);
void conv2d_winograd_2x2_forward_cpu(const Conv2dParams& params, ConstTensorView input,
                                     const Conv2dDirectWeights& transformed_weights, const float* bias,
                                     const float* residual, bool relu, TensorView output, float* workspace,
                                     int num_threads);
#endif
}  // namespace prism
