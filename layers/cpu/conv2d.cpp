// layers/cpu/conv2d.cpp: fast CPU convolution: which algorithm a shape gets, and the im2col one:
// im2col on a tile of output rows (or on several small images side by side), then one packed
// GEMM per task with bias, residual and ReLU applied in its epilogue while the results are still
// in registers. A 1x1 stride-1 convolution skips im2col entirely: the GEMM reads the input's planes
// in place, of one image or of several side by side. Winograd
// (conv2d_winograd.cpp) and the direct kernel (conv2d_direct.cpp) live in their own files.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "engine/error.hpp"
#include "layers/conv2d.hpp"
#include "layers/cpu/task_runs.hpp"

namespace prism {
namespace {

constexpr int64_t column_tile_budget_floats = int64_t{1} << 19;  // 2 MiB: about an L2 cache
// Thresholds of conv2d_choose_algorithm_cpu, measured on ResNet-50's and VGG-16's layers at batch 1
// and 8 (bench/cpu_vs_peers.py's machine, 2 threads).
// Columns: ResNet-50's 7x7 stage at batch 8 gives the GEMM 4 images side by side (196 columns);
// since the direct kernel writes its results a square of vectors at a time, it runs those faster
// (layer4's 1x1s 3.34 -> 3.13 and 3.35 -> 3.0 ms, the downsample 6.75 -> 6.2). The 14x14 stage
// (392 columns) stays with the GEMM where its products are shallow (below).
constexpr int64_t gemm_fewest_columns_to_choose = 256;
// Products 512 deep or more over several small images a task want twice the columns. The direct
// kernel ran ResNet-50's 14x14 1x1s of depth 1024 at batch 8 (two images a task: 392 columns)
// faster than the GEMM, five alternating profiles each: layer3's conv1s 3.00-3.03 -> 2.84-2.86 ms,
// layer4.0.conv1 5.93 -> 5.66, the strided layer3.0.downsample (depth 512) 6.65 -> 6.14; at batch
// 64 layer4's 1x1s too (eight 7x7 images a task), the downsample 59.0 -> 52.3 ms. Those of depth
// 256 (conv3, 256 -> 1024) ran faster on the GEMM (2.91 against 3.03 ms) and stay there, and so do
// tiles of one image: at batch 1 (the direct kernel's threads then share the image by channels)
// layer2's 512 -> 128 1x1s took 0.46-0.57 ms direct against 0.38 on the GEMM (392 columns a task).
// Without AVX-512 the direct kernel fetches every pass's input ahead (direct_fetch_input_always).
// On an AMD Zen 3 (plans alternating pass by pass in one process, two plans of each choice) it then
// ran those conv3s of depth 256 at batch 8 faster too (layer3's 10.4-10.6 -> 8.0-8.4 ms).
#if defined(__AVX512F__)
constexpr int64_t deep_product = 512;
#else
constexpr int64_t deep_product = 256;
#endif
// One image that the threads share (batch 1), of at most this many output pixels, without AVX-512:
// its 1x1 windows go to the direct kernel and its 3x3s to F(2x2, 3x3) rather than F(4x4). At batch
// 1 each weight meets few pixels, F(4x4)'s 36 matrices of weights are 2.25 times F(2x2)'s 16, and
// a 28x28 image has 49 tiles of F(4x4) against 196 of F(2x2). On the Zen 3, same method: layer2's
// 1x1s 1.35-1.40 -> 1.20-1.40 ms (its strided downsample alike), layer3.0.conv1 2.57-2.60 ->
// 2.29-2.39, the forward pass 93.4-93.6 -> 92.0-92.3; then layer2's 3x3s 1.54-1.60 -> 1.22-1.26 ms,
// the sum of the steps 74.3-74.7 -> 72.9-73.5; VGG-16's forward pass 177-182 -> 170-172 (its
// 28x28 3x3s of 512 channels; 16 passes). At 56x56 the direct kernel ran the widening 1x1s (64 ->
// 64, 64 -> 256) 0.05-0.1 ms faster and the narrowing ones (256 -> 64, 256 -> 128) as much slower:
// the two cancel, so all of them stay with the GEMM; F(2x2) ran as fast as F(4x4) there (64
// channels, a harness), so those 3x3s keep F(4x4).
// The Xeon's GEMM ran layer2's 512 -> 128 1x1s at batch 1 faster than the direct kernel (above).
#if defined(__AVX512F__)
constexpr int64_t small_shared_image_most_pixels = 0;
#else
constexpr int64_t small_shared_image_most_pixels = 32 * 32;
#endif
// Without AVX-512 the GEMM keeps only the 1x1 windows that narrow from a shallow product (fewer
// output channels than input, fewer than 512 input channels: ResNet-50's 256 -> 64 and 256 -> 128
// at 56x56), which ran as fast or faster there. The rest go to the direct kernel at every size
// and batch. Where the results are the larger side the direct kernel wrote them faster than the
// GEMM; why is not pinned down (on this host the GEMM's times there spread twice as wide, best to
// median, as the direct kernel's). On the Zen 3, ResNet-50 at batch 8 (two plans of each choice
// alternating pass by pass in one process, 60 passes): layer1's 64 -> 256 1x1s 12.0-12.3 ->
// 9.8-10.1 ms, layer2's 128 -> 512 10.1-10.2 -> 8.7-8.9, layer2.0.downsample (strided) 21.6-21.7 ->
// 20.0-20.4; layer1.0.conv1 (64 -> 64) 3.2-3.5 -> 2.6 (40 passes); then (50 passes) layer2's 512 ->
// 128 7.8 -> 7.4-7.5 ms, layer3.0.conv1 (512 -> 256 at 28x28) 14.9-15.5 -> 14.7-14.8. At batch 1
// (100-150 passes) layer1's 64 -> 256 1.26-1.29 -> 1.21-1.24 ms, layer1.0.conv1 0.47-0.52 -> 0.38.
// ResNeXt-50 and Wide ResNet-50-2 at batch 8 (12 and 16 passes): the forward pass 769-809 ->
// 720-739 ms and 1322-1399 -> 1301-1336. ONNX Runtime runs ResNet-50's widening 1x1s at batch 8 in
// 6.6 (layer1) and 6.3 ms (layer2).
// A stage's last 1x1 whose output PRISM keeps as means stays on the GEMM where that writes them
// (conv2d_gemm_writes_channel_means): direct, a pass of their own read the output back, and the two
// cost the same (a harness at batch 8: layer1's 64 -> 256 on the GEMM 12.3 ms, 12.9 with the means;
// channel_mean of its output 2.2 ms; layer2's 128 -> 512 10.4 and 10.9, its means 1.4).
#if defined(__AVX512F__)
constexpr bool gemm_keeps_only_shallow_narrowing_1x1 = false;
#else
constexpr bool gemm_keeps_only_shallow_narrowing_1x1 = true;
#endif
constexpr int64_t shallow_narrowing_most_depth = 511;
constexpr int64_t gemm_fewest_columns_deep = 512;
constexpr int64_t direct_most_channels_windowed = 128;
// F(2x2, 3x3) on images of at least this many tiles (12x12 outputs), and on a batch of one image
// from 16 tiles (7x7 outputs); see choose_for_fp32.
constexpr int64_t winograd_2x2_fewest_image_tiles = 36;
constexpr int64_t winograd_2x2_fewest_tiles_one_image = 16;
constexpr int64_t direct_fewest_depth = 64;
constexpr int64_t wanted_items_per_thread = 16;  // GEMM tasks cut into parts (whole panels) until there are this many
constexpr int64_t means_part_floats = int64_t{1} << 18;  // 1 MiB

bool is_pointwise(const Conv2dParams& p) {
  return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 && p.stride_w == 1 && p.padding_h == 0 &&
         p.padding_w == 0;
}

// How the output is cut into tasks, each one GEMM: a tile of output rows of one image, or, where
// images are small (ResNet's 14x14 and 7x7 stages), several whole images side by side, so that
// the GEMM has enough columns: 49 columns would fill barely one panel of 48 and half of another.
struct TaskShape {
  int64_t images = 1;  // images per task (whole images when more than one)
  int64_t rows = 0;    // output rows per task (all of them when images > 1)

  int64_t row_tiles(int64_t out_h) const { return (out_h + rows - 1) / rows; }          // per image
  int64_t image_blocks(int64_t batch) const { return (batch + images - 1) / images; }  // of `images` each
  // Tasks in all, one GEMM each.
  int64_t tasks(int64_t batch, int64_t groups, int64_t out_h) const {
    return image_blocks(batch) * groups * row_tiles(out_h);
  }
};

// Tiles keep the column matrix within the cache budget, and when the batch is too small to give
// every thread an (image, group) of its own, images are cut into at least as many tiles as there
// are threads, so batch 1 runs on every core too. Tiles under 256 pixels make GEMMs too thin;
// those stay whole and the GEMM splits itself instead.
TaskShape task_shape(const Conv2dParams& p, int64_t batch, int64_t out_h, int64_t out_w, int num_threads) {
  constexpr int64_t smallest_split_tile_pixels = 256;
  constexpr int64_t wanted_columns = 384;  // 8 panels
  const int64_t out_pixels = out_h * out_w;
  if (out_pixels < wanted_columns && batch > 1) {
    const int64_t images_per_thread = (batch + num_threads - 1) / num_threads;
    const int64_t images = std::min((wanted_columns + out_pixels - 1) / out_pixels, images_per_thread);
    if (images > 1) return {images, out_h};
  }
  const int64_t k = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  int64_t rows = std::clamp<int64_t>(column_tile_budget_floats / std::max<int64_t>(1, k * out_w), 1, out_h);
  const int64_t split_rows = (out_h + num_threads - 1) / num_threads;
  if (batch * p.groups < num_threads && split_rows * out_w >= smallest_split_tile_pixels) {
    rows = std::min(rows, split_rows);
  }
  return {1, rows};
}

// to[i] = from[2 i]: with the stride a constant the compiler turns this into vector loads and
// shuffles (ResNet's stem, its strided 3x3 and downsample convolutions spent most of their time
// in the general strided copy below).
void copy_every_second(const float* __restrict from, int64_t count, float* __restrict to) {
  for (int64_t i = 0; i < count; ++i) to[i] = from[2 * i];
}

// Fills columns (K, rows * out_w) for output rows [row_begin, row_end) of one image and group:
// row (ic, ky, kx) of the matrix, columns_stride floats from the next, holds the input pixel each
// output pixel sees through that tap.
void im2col_tile(const Conv2dParams& p, const float* image, int64_t height, int64_t width, int64_t out_w,
                 int64_t row_begin, int64_t row_end, float* columns, int64_t columns_stride) {
  const int64_t in_per_group = p.in_channels / p.groups;
  for (int64_t ic = 0; ic < in_per_group; ++ic) {
    const float* plane = image + ic * height * width;
    for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
        float* row = columns + ((ic * p.kernel_h + ky) * p.kernel_w + kx) * columns_stride;
        // Output columns whose input column lies inside the image: ix = ox * s - pad + kx * d.
        const int64_t shift = kx * p.dilation_w - p.padding_w;
        int64_t ox_first = shift >= 0 ? 0 : (-shift + p.stride_w - 1) / p.stride_w;
        int64_t ox_last = (width - 1 - shift) >= 0 ? (width - 1 - shift) / p.stride_w : -1;
        ox_first = std::min(ox_first, out_w);
        ox_last = std::min(ox_last, out_w - 1);
        for (int64_t oy = row_begin; oy < row_end; ++oy, row += out_w) {
          const int64_t iy = oy * p.stride_h - p.padding_h + ky * p.dilation_h;
          if (iy < 0 || iy >= height || ox_last < ox_first) {
            std::fill(row, row + out_w, 0.0f);
            continue;
          }
          const float* source = plane + iy * width + shift;
          std::fill(row, row + ox_first, 0.0f);
          if (p.stride_w == 1) {
            std::memcpy(row + ox_first, source + ox_first, (ox_last - ox_first + 1) * sizeof(float));
          } else if (p.stride_w == 2) {
            copy_every_second(source + 2 * ox_first, ox_last - ox_first + 1, row + ox_first);
          } else {
            for (int64_t ox = ox_first; ox <= ox_last; ++ox) row[ox] = source[ox * p.stride_w];
          }
          std::fill(row + ox_last + 1, row + out_w, 0.0f);
        }
      }
    }
  }
}

// Floats of scratch one task needs: its column matrix (K, columns) unless the input is it, and the
// GEMM's packed B.
int64_t task_workspace_floats(const Conv2dParams& p, const TaskShape& shape, int64_t out_w) {
  const int64_t k = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  const int64_t columns = shape.images * shape.rows * out_w;
  return (is_pointwise(p) ? 0 : k * columns) + gemm_workspace_floats(k, columns);
}

}  // namespace

const char* conv2d_algorithm_name(Conv2dAlgorithm algorithm) {
  switch (algorithm) {
    case Conv2dAlgorithm::im2col_gemm: return "im2col_gemm";
    case Conv2dAlgorithm::winograd: return "winograd";
    case Conv2dAlgorithm::winograd_2x2: return "winograd_2x2";
    case Conv2dAlgorithm::direct: return "direct";
  }
  return "?";
}

namespace {

// The choice for fp32 products; conv2d_choose_algorithm_cpu below adjusts it for bf16.
Conv2dAlgorithm choose_for_fp32(const Conv2dParams& p, const Shape& input_shape, bool allow_winograd, int num_threads,
                                bool output_means) {
  const bool windowed = p.kernel_h > 1 || p.kernel_w > 1;
  const bool strided = p.stride_h > 1 || p.stride_w > 1;
  const int64_t depth = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  // The direct kernel's tile is a block of 16 channels or more (AVX-512) by a few pixels, and its
  // results cross over to the output's planes one by one: it wastes lanes on groups of few
  // channels (ResNeXt's first stages) and loses to that crossing on shallow products (an RGB 3x3).
  const bool direct_suits = p.out_channels / p.groups >= 2 * simd_floats && depth >= direct_fewest_depth;
  // im2col of strided windows (the stem, ResNet's strided 3x3s) copies more than the GEMM then
  // saves over the direct kernel.
  if (direct_suits && windowed && strided) return Conv2dAlgorithm::direct;
  const Shape out = conv2d_output_shape(p, input_shape);
  const bool small_shared_image =
      input_shape[0] * p.groups < num_threads && out[2] * out[3] <= small_shared_image_most_pixels;
  if (direct_suits && !windowed && small_shared_image) return Conv2dAlgorithm::direct;
  const bool shallow_narrowing = p.out_channels < p.in_channels && depth <= shallow_narrowing_most_depth;
  if (direct_suits && !windowed && gemm_keeps_only_shallow_narrowing_1x1 && !shallow_narrowing &&
      !(output_means && conv2d_gemm_writes_channel_means(p, input_shape, num_threads))) {
    return Conv2dAlgorithm::direct;
  }
  // Winograd saves two thirds of the GEMM's arithmetic and adds transforms that cost in
  // proportion to the channels rather than their square, in chunks of 192 tiles. On the Xeon
  // bench/ measures on it beat the direct kernel on every ResNet-50 and VGG-16 shape it applies
  // to (32 tiles and more), batch 1 included: there ResNet-50's 56x56 and 28x28 3x3s, 196 and 49
  // tiles of 64 and 128 channels, took 0.70-0.76 and 0.67 ms against 0.82-0.83 and 0.75-0.77
  // direct. (On an AMD Zen 5 those two had run faster direct.)
  const bool small_shared_2x2 = small_shared_image && conv2d_winograd_2x2_applies(p);
  if (allow_winograd && conv2d_winograd_applies(p, input_shape) && !small_shared_2x2) {
    return Conv2dAlgorithm::winograd;
  }
  // Where F(4x4, 3x3) has too few tiles, F(2x2, 3x3) still beats the direct kernel on 14x14 images
  // but not on 7x7 ones, whose 16 tiles cover 8x8 outputs and use each weight 16 times (a harness
  // reading the weights from memory each call, 2 threads, batch 1: 14x14 with 256 channels 0.85 ->
  // 0.70 ms, with 512 channels 3.14 -> 2.35; 7x7 with 512 channels 1.00 against 1.07, at batch 4
  // 3.37 against 3.99). ResNet-50 at batch 1, six alternating profiles: layer3's five 3x3s 3.80 ->
  // 3.00 ms, the forward pass 28.8 -> 27.8.
  // A 7x7 image alone is the exception on the AMD Zen 5 of later sessions: the direct kernel's
  // threads then share 49 pixels (tiles of 6, the last with 1), while at batch 2 and more several
  // images make one run of tiles (conv2d_direct.cpp). ResNet-50 at batch 1, layer4.1 and 4.2's
  // 3x3s, eight alternating profiles each, twice: 1.53 -> 1.42 ms and 1.56 -> 1.44 for the two. A
  // harness of that layer (2 threads) at batch 2 had F(2x2) ahead with the weights in cache (1.34
  // against 1.48 ms direct) and behind with them in memory (1.65 against 1.51), at batch 4 behind
  // (3.35 against 2.92).
  const int64_t fewest_image_tiles =
      input_shape[0] == 1 ? winograd_2x2_fewest_tiles_one_image : winograd_2x2_fewest_image_tiles;
  if (allow_winograd && conv2d_winograd_2x2_applies(p) && p.in_channels >= 16 && p.out_channels >= 16 &&
      conv2d_winograd_2x2_image_tiles(p, input_shape) >= fewest_image_tiles) {
    return Conv2dAlgorithm::winograd_2x2;
  }
  // Windowed convolutions with few output channels: the column matrix (nine times the input for
  // 3x3) is copied for too little arithmetic per element.
  if (direct_suits && windowed && p.out_channels / p.groups <= direct_most_channels_windowed) {
    return Conv2dAlgorithm::direct;
  }
  // The GEMM needs wide products, and one per thread at least: otherwise each thread builds the
  // whole column matrix again for its share of the channels.
  const TaskShape shape = task_shape(p, input_shape[0], out[2], out[3], num_threads);
  const int64_t tasks = shape.tasks(input_shape[0], p.groups, out[2]);
  const int64_t columns = shape.images * shape.rows * out[3];
  const bool deep_over_images = depth >= deep_product && shape.images > 1;
  const int64_t fewest_columns = deep_over_images ? gemm_fewest_columns_deep : gemm_fewest_columns_to_choose;
  if (direct_suits && (tasks < num_threads || columns < fewest_columns)) return Conv2dAlgorithm::direct;
  return Conv2dAlgorithm::im2col_gemm;
}

}  // namespace

Conv2dAlgorithm conv2d_choose_algorithm_cpu(const Conv2dParams& p, const Shape& input_shape, bool allow_winograd,
                                            int num_threads, GemmPrecision precision, bool output_means) {
  const Conv2dAlgorithm fp32 = choose_for_fp32(p, input_shape, allow_winograd, num_threads, output_means);
  // In bf16 the GEMM runs twice as fast and the direct kernel no faster (it stays fp32), so the
  // GEMM takes what fp32 gives the direct kernel: ResNet-50 at batch 1 in bf16 33.8 -> 23-24 ms.
  // Winograd keeps its shapes, in fp32: without it VGG-16 at batch 8 in bf16 took 490-540 ms
  // against 380-390.
  return precision == GemmPrecision::bf16 && fp32 == Conv2dAlgorithm::direct ? Conv2dAlgorithm::im2col_gemm : fp32;
}

Conv2dPreparedCpu conv2d_prepare_cpu(const Conv2dParams& p, ConstTensorView weight, const Shape& input_shape,
                                     Conv2dAlgorithm algorithm, GemmPrecision precision) {
  Conv2dPreparedCpu prepared;
  prepared.algorithm = algorithm;
  switch (algorithm) {
    case Conv2dAlgorithm::winograd: prepared.matrices = conv2d_winograd_pack_weights(p, weight.data); return prepared;
    case Conv2dAlgorithm::winograd_2x2:
      prepared.direct = conv2d_winograd_2x2_pack_weights(p, weight.data, input_shape);
      return prepared;
    case Conv2dAlgorithm::direct:
      prepared.direct = conv2d_direct_pack_weights(p, weight.data, input_shape);
      return prepared;
    case Conv2dAlgorithm::im2col_gemm: break;
  }
  // weight (C_out, C_in / groups * kh * kw) row-major: one matrix of C_out / groups rows per group.
  const int64_t out_per_group = p.out_channels / p.groups;
  const int64_t k = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  for (int64_t group = 0; group < p.groups; ++group) {
    PackedMatrix matrix = gemm_pack_a(weight.data + group * out_per_group * k, out_per_group, k, k);
    prepared.matrices.push_back(precision == GemmPrecision::bf16 ? gemm_to_bf16(matrix) : std::move(matrix));
  }
  return prepared;
}

int64_t conv2d_workspace_floats_cpu(const Conv2dParams& p, const Conv2dPreparedCpu& prepared, const Shape& input_shape,
                                    int num_threads) {
  switch (prepared.algorithm) {
    case Conv2dAlgorithm::winograd: return conv2d_winograd_workspace_floats(p, input_shape, num_threads);
    case Conv2dAlgorithm::winograd_2x2: return conv2d_winograd_2x2_workspace_floats(p, input_shape, num_threads);
    case Conv2dAlgorithm::direct:
      return conv2d_direct_workspace_floats(p, input_shape, num_threads,
                                            prepared.max_pool ? &*prepared.max_pool : nullptr);
    case Conv2dAlgorithm::im2col_gemm: break;
  }
  const Shape out = conv2d_output_shape(p, input_shape);
  return int64_t{num_threads} *
         task_workspace_floats(p, task_shape(p, input_shape[0], out[2], out[3], num_threads), out[3]);
}

bool conv2d_gemm_writes_channel_means(const Conv2dParams& p, const Shape& input_shape, int num_threads) {
  const Shape out = conv2d_output_shape(p, input_shape);
  const TaskShape shape = task_shape(p, input_shape[0], out[2], out[3], num_threads);
  return p.groups == 1 && shape.tasks(input_shape[0], p.groups, out[2]) >= num_threads;
}

void conv2d_forward_cpu(const Conv2dParams& p, ConstTensorView input, const Conv2dPreparedCpu& prepared,
                        const float* bias, const float* residual, bool relu, TensorView output, float* workspace,
                        int num_threads, float* channel_means) {
  const MaxPool2dParams* pool = prepared.max_pool ? &*prepared.max_pool : nullptr;
  if (pool && prepared.algorithm != Conv2dAlgorithm::direct &&
      !(prepared.algorithm == Conv2dAlgorithm::winograd && conv2d_winograd_fuses_max_pool(*pool))) {
    throw Error("conv2d: a max pool fuses only into the direct convolution, and a 2x2 one of stride 2 into Winograd");
  }
  if (channel_means && !prepared.max_pool &&
      !(prepared.algorithm == Conv2dAlgorithm::im2col_gemm &&
        conv2d_gemm_writes_channel_means(p, input.shape, num_threads))) {
    throw Error("conv2d: channel means come only with a fused max pool or from GEMM tasks of whole pixels");
  }
  switch (prepared.algorithm) {
    case Conv2dAlgorithm::winograd:
      conv2d_winograd_forward_cpu(p, input, prepared.matrices, bias, residual, relu, output, workspace, num_threads,
                                  pool, channel_means);
      return;
    case Conv2dAlgorithm::winograd_2x2:
      conv2d_winograd_2x2_forward_cpu(p, input, prepared.direct, bias, residual, relu, output, workspace, num_threads);
      return;
    case Conv2dAlgorithm::direct:
      conv2d_direct_forward_cpu(p, input, prepared.direct, bias, residual, relu, output, workspace, num_threads, pool,
                                channel_means);
      return;
    case Conv2dAlgorithm::im2col_gemm: break;
  }
  const int64_t batch = input.dim(0), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3), out_pixels = out_h * out_w;
  const int64_t in_per_group = p.in_channels / p.groups;
  const int64_t out_per_group = p.out_channels / p.groups;
  const bool pointwise = is_pointwise(p);
  const TaskShape shape = task_shape(p, batch, out_h, out_w, num_threads);
  const int64_t tiles = shape.row_tiles(out_h);
  const int64_t tasks = shape.tasks(batch, p.groups, out_h);
  const int64_t per_task_floats = task_workspace_floats(p, shape, out_w);

  // Where there are few tasks, those of one image's pixels whose input is read in place
  // (pointwise) are cut into `parts` runs of whole panels of columns, so that a thread done first
  // has something to take from another (TaskRuns below) while the owner runs them one after the
  // other, much as one product. ResNet-50 at batch 1 (two tasks a layer at 56x56 and 28x28), 120
  // passes of each way alternating in one process: its GEMM steps 6.97 -> 6.46 ms a pass while one
  // CPU ran slower than the other, 5.99 -> 5.88 while both ran alike (4 parts a thread, each of at
  // least 4 panels). Parts as small as one panel, up to 16 a thread: the same GEMM steps 5.74-5.91
  // -> 5.51-5.62 ms at batch 1 in three runs of 150 alternating passes, the forward pass 0.1-0.4
  // ms faster; at batch 8 (8 or 16 tasks a layer, now 2-4 parts each) 46.6-46.9 -> 43.7-45.3 ms.
  const int64_t panels_a_task = (shape.rows * out_w + gemm_columns_per_panel - 1) / gemm_columns_per_panel;
  const int64_t parts =
      pointwise && shape.images == 1
          ? std::clamp<int64_t>((wanted_items_per_thread * num_threads + tasks - 1) / tasks, 1, panels_a_task)
          : 1;

  // Part `part` of `parts` of one task's columns, for all its output channels or the rows
  // [row_first, row_last) of them (one thread's share).
  auto run_task = [&](int64_t task, float* scratch, int64_t row_first, int64_t row_last, int64_t part) {
    const int64_t n_begin = task / (p.groups * tiles) * shape.images;
    const int64_t n_end = std::min(batch, n_begin + shape.images);
    const int64_t group = task / tiles % p.groups;
    const int64_t row_begin = task % tiles * shape.rows;
    const int64_t row_end = std::min(out_h, row_begin + shape.rows);
    const int64_t pixels = (row_end - row_begin) * out_w;  // per image
    const int64_t columns = (n_end - n_begin) * pixels;
    const PackedMatrix& weights = prepared.matrices[group];
    auto image = [&](int64_t n) { return input.data + (n * p.in_channels + group * in_per_group) * height * width; };
    auto out_at = [&](int64_t n) {
      return (n * p.out_channels + group * out_per_group) * out_pixels + row_begin * out_w;  // offset in output
    };

    // The column matrix (K, columns). Pointwise: the input planes already are it.
    const float* cols = image(n_begin) + row_begin * out_w;
    int64_t cols_stride = height * width, cols_run_stride = p.in_channels * height * width;
    float* rest = scratch;
    if (!pointwise) {
      for (int64_t n = n_begin; n < n_end; ++n) {
        im2col_tile(p, image(n), height, width, out_w, row_begin, row_end, scratch + (n - n_begin) * pixels, columns);
      }
      cols = scratch;
      cols_stride = columns;
      cols_run_stride = pixels;
      rest = scratch + weights.depth * columns;
    }
    // Several images: B, C and the residual in runs of one image's pixels, each image's planes
    // where they are. Gathered into a column matrix and the result spread out again, ResNet-50's
    // 1x1s at 14x14 and 7x7 (batch 8) took 75-78 ms against 72-73.
    const int64_t out_run_stride = p.out_channels * out_pixels;
    const GemmColumnRuns runs = n_end - n_begin > 1
                                    ? GemmColumnRuns{pixels, cols_run_stride, out_run_stride, out_run_stride}
                                    : GemmColumnRuns{};
    const GemmEpilogue epilogue{bias ? bias + group * out_per_group : nullptr,
                                residual ? residual + out_at(n_begin) : nullptr, out_pixels, relu};
    const bool one_image = n_end - n_begin == 1;
    // With the channel means, each part's pixels are read back over every channel while they are
    // in L2: a task of one image in parts of at most means_part_floats results (whole panels).
    // ResNet-50 at batch 8, a harness of the stage's last 1x1 with its residual: layer1's (an
    // image a task, 3.2 MB of results) 3.24 ms alone, 3.99 with the means of the whole task, 3.58
    // in parts; a pass of its own after the step (what the plan did) 4.04.
    const int64_t step =
        channel_means && one_image
            ? std::max<int64_t>(1, means_part_floats / p.out_channels / gemm_columns_per_panel) * gemm_columns_per_panel
            : columns;
    // This part's columns (all of them, or whole panels of one image's), and where B comes from:
    // as far as the whole task's B is, however small a part of it this is.
    const int64_t this_task_panels = (columns + gemm_columns_per_panel - 1) / gemm_columns_per_panel;
    const int64_t column_begin = this_task_panels * part / parts * gemm_columns_per_panel;
    const int64_t column_end = std::min(columns, this_task_panels * (part + 1) / parts * gemm_columns_per_panel);
    const GemmBSource b_source = gemm_b_source_by_size(weights.depth, columns);
    for (int64_t first = column_begin; first < column_end; first += step) {
      const int64_t count = std::min(step, column_end - first);  // columns != step: one image, no runs
      GemmEpilogue part_epilogue = epilogue;
      if (residual) part_epilogue.addend += first;
      gemm_packed(weights, cols + first, cols_stride, count, output.data + out_at(n_begin) + first, out_pixels,
                  part_epilogue, rest, 1, row_first, row_last, runs, b_source);
      // Each image's pixels of this part: the part itself, or (several images) each whole image.
      const int64_t offset = one_image ? first : 0, length = one_image ? count : pixels;
      for (int64_t n = n_begin; channel_means && n < n_end; ++n) {
        channel_mean_of_pixels(output.data + out_at(n) + offset, p.out_channels, out_pixels, length,
                               channel_means + n * out_pixels + row_begin * out_w + offset);
      }
    }
  };

  // Tasks in runs, one run a thread (TaskRuns): a thread done first takes the others' last
  // tasks. Fewer tasks than threads (one small image): the threads share out each task's output
  // channels in whole GEMM panels, each building its own copy of the (small) column matrix.
  const int64_t wanted_shares = tasks < num_threads ? num_threads : 1;
  const int64_t share = (out_per_group + wanted_shares - 1) / wanted_shares;
  const int64_t rows_per_share = (share + gemm_rows_per_panel - 1) / gemm_rows_per_panel * gemm_rows_per_panel;
  const int64_t shares = (out_per_group + rows_per_share - 1) / rows_per_share;
  TaskRuns items(tasks * shares * parts, num_threads);
#pragma omp parallel num_threads(num_threads)
  {
    const int thread = omp_get_thread_num();
    for (int64_t item = items.next(thread); item >= 0; item = items.next(thread)) {
      const int64_t row_first = item / parts % shares * rows_per_share;
      run_task(item / (parts * shares), workspace + thread * per_task_floats, row_first,
               std::min(out_per_group, row_first + rows_per_share), item % parts);
    }
  }
}

}  // namespace prism
