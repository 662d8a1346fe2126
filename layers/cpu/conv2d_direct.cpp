// layers/cpu/conv2d_direct.cpp: direct convolution for small images (ResNet's 28x28 to 7x7 stages,
// batch 1), where im2col + GEMM loses to its own copying: the column matrix of one 14x14 layer is
// nine times its input, and with one image each thread packed all of it again. Here nothing is
// gathered. The weights are packed once, per block of output channels, into (depth, channels)
// rows whose channels fill whole vectors; the micro-kernel (layers/cpu/direct_kernel.cpp) keeps a
// tile of a few consecutive output pixels by one block of channels in registers, broadcasts each
// input value a pixel sees through a tap, and multiplies it with the vector of weights of that
// tap. Padding is a zero border copied around each image once per call, so no tap needs a bounds
// check; a strided 1x1 convolution (a ResNet downsample) copies only the pixels it reads, side by
// side. A max pool after it (ResNet's stem) can be computed from each task's results while they
// are in cache, along with their mean over channels. Any kernel, stride, dilation and groups; the
// plan chooses it by shape (conv2d_choose_algorithm_cpu).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "engine/error.hpp"
#include "layers/conv2d.hpp"
#include "layers/cpu/direct_kernel.hpp"
#include "layers/cpu/task_runs.hpp"

namespace prism {
namespace {

// Weights of one depth block, which every tile of a task's range multiplies before the next block.
// With AVX-512, 64 KiB: 256 taps of a 64-channel block (measured: 16-128 KiB were alike; 8-32 KiB,
// sized for L1, up to 1.3x slower). With 16 vector registers a block has 16 channels (AVX2), and
// 64 KiB would be 1024 taps, whose weights and input lines no longer fit L1 with each other: every
// tap's weights then came from L2 again for each tile. 8 KiB (128 taps) keeps them in L1. On an AMD
// Zen 3 (32 KiB L1), ResNet-50 in one process, plans alternating pass by pass: at batch 1 (60
// passes) layer4's 1x1s 1.36-1.50 -> 1.12-1.18 ms, layer4.0.downsample 2.86 -> 2.24,
// layer2.0.conv2 2.85 -> 2.24, the forward pass 82.1 -> 79.4; at batch 8 (30 passes) 646 -> 605
// (layer4's 1x1s 9.3-10.5 -> 8.0-8.6). 16 KiB gained about half as much, 4 KiB as much at batch 1.
#if defined(__AVX512F__)
constexpr int64_t weight_block_floats = 16384;
#else
constexpr int64_t weight_block_floats = 2048;
#endif
constexpr int64_t tile_buffer_floats = 16384;     // 64 KiB of results per task: stays in L2
constexpr int64_t pooled_buffer_floats = 1 << 18;  // 1 MiB of results per task before a fused max pool
constexpr int64_t copied_chunk_floats = 1 << 20;   // padded or subsampled images copied at a time: 4 MiB

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

struct Geometry {
  int64_t vectors;             // per channel block: its channels are vectors * simd_floats
  int64_t pixels_per_tile;     // consecutive output pixels (in raster order) one kernel call covers
  int64_t block_channels;      // vectors * simd_floats
  int64_t blocks;              // channel blocks per group
  int64_t depth;               // C_in / groups * kernel_h * kernel_w
  int64_t depth_per_block;     // taps of one pass over the tiles
  // The image the kernel reads and its window's strides there: the input itself, the input with
  // its zero border, or (a strided 1x1 window) only the pixels the window reads, stride 1.
  bool copied, subsampled;
  int64_t image_h, image_w;
  int64_t stride_h, stride_w;
};

Geometry geometry(const Conv2dParams& p, const Shape& input_shape) {
  Geometry g;
  const int64_t out_per_group = p.out_channels / p.groups;
  g.vectors = direct_vectors_for(out_per_group);
  g.pixels_per_tile = direct_pixels_per_tile(g.vectors);
  g.block_channels = g.vectors * simd_floats;
  g.blocks = ceil_div(out_per_group, g.block_channels);
  g.depth = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  g.depth_per_block = std::max<int64_t>(1, weight_block_floats / g.block_channels);
  // A strided 1x1 window reads a quarter of its input or less, spread over every plane: copied
  // together first, the pixels of ResNet-50's layer3.0.downsample at batch 1 stay in L2 for every
  // block of channels instead of coming from memory each time (0.98 -> 0.87 ms, a harness with
  // the caches flushed between calls).
  const bool padded = p.padding_h > 0 || p.padding_w > 0;
  g.subsampled = !padded && p.kernel_h == 1 && p.kernel_w == 1 && (p.stride_h > 1 || p.stride_w > 1);
  g.copied = padded || g.subsampled;
  if (g.subsampled) {
    const Shape out = conv2d_output_shape(p, input_shape);
    g.image_h = out[2];
    g.image_w = out[3];
    g.stride_h = g.stride_w = 1;
  } else {
    g.image_h = input_shape[2] + 2 * p.padding_h;
    g.image_w = input_shape[3] + 2 * p.padding_w;
    g.stride_h = p.stride_h;
    g.stride_w = p.stride_w;
  }
  return g;
}

// Tiles whose results the tile buffer holds (one at least).
int64_t buffer_tiles(const Geometry& g) {
  return std::max<int64_t>(1, tile_buffer_floats / (g.pixels_per_tile * g.block_channels));
}

// Tiles per task: the task's results fit the tile buffer, and there are enough tasks for every
// thread (at least four each where the layer is big enough), so that batch 1 uses every core.
// `pixels` are those of a task's images (several, side by side, where they are small).
int64_t tiles_per_task(const Geometry& g, int64_t pixels, int64_t images_times_blocks, int num_threads) {
  const int64_t tiles = ceil_div(pixels, g.pixels_per_tile);
  const int64_t wanted_ranges = ceil_div(4 * num_threads, images_times_blocks);
  return std::clamp<int64_t>(ceil_div(tiles, wanted_ranges), 1, buffer_tiles(g));
}

// Images side by side in one task, their pixels one run of tiles: those that the tile buffer holds
// several of, up to a thread's share of the batch. Each task then reads its block's weights once for
// all of them, not once an image, and a tile can take the last pixels of one image and the first of
// the next, where each 7x7 image alone left 5 of its 9 tiles' 54 pixels empty. ResNet-50 at batch
// 8 (four images a task in layer4), four alternating profiles: layer4.0.conv2 8.29 -> 6.39 ms,
// layer4.0.downsample 6.12 -> 5.16, the other 1x1s of layer4 14.3 -> 12.7. Four 14x14 images a
// task with four times the buffer lost (layer3's 1024 -> 256 1x1s 13.1 -> 15.5 ms: each block then
// read four images' input from L3). A fused pool (ranges of its rows) keeps one image a task.
int64_t images_per_task(const Geometry& g, const MaxPool2dParams* pool, int64_t conv_pixels, int64_t count,
                        int num_threads) {
  if (pool) return 1;
  return std::clamp<int64_t>(buffer_tiles(g) * g.pixels_per_tile / conv_pixels, 1, ceil_div(count, num_threads));
}

// Where each of the convolution's pixels [begin, end) starts reading its window in the kernel's
// input, the pixels counted from the first of `image` on through the images after it
// (`image_floats` apart, conv_h rows of conv_w pixels each). One division for the first pixel,
// steps for the rest. Three divisions per pixel, every task, had taken 3% (256 -> 256 channels at
// 14x14) to 10% (64 -> 256 at 56x56) of a 1x1's time on one thread (`perf record`), and without
// them ResNet-50's direct layers at batch 1 ran 1-2% faster (two plans of each way alternating
// pass by pass, 60 passes: 39.9 and 40.3 -> 39.5 and 39.5 ms).
void window_starts(const Geometry& g, const float* image, int64_t image_floats, int64_t conv_h, int64_t conv_w,
                   int64_t begin, int64_t end, const float** starts) {
  const int64_t conv_pixels = conv_h * conv_w;
  int64_t y = begin % conv_pixels / conv_w, x = begin % conv_w;
  image += begin / conv_pixels * image_floats;
  const float* row = image + y * g.stride_h * g.image_w;
  for (int64_t i = 0; i < end - begin; ++i) {
    starts[i] = row + x * g.stride_w;
    if (++x < conv_w) continue;
    x = 0;
    row += g.stride_h * g.image_w;
    if (++y < conv_h) continue;
    y = 0;
    image += image_floats;
    row = image;
  }
}

// How an image's outputs are cut into the ranges of its tasks: runs of `per_range` tiles of
// consecutive output pixels or, with a max pool fused after the convolution, runs of `per_range`
// rows of the pool's output, for which a task computes every convolution row their windows read
// (one row more than its share, for ResNet's 3x3 stride-2 pool, computed by both neighbours).
// Without a pool a task's pixels may run on through the next images (images_per_task).
// And the floats of results each thread keeps: the convolution's, then the pool's.
struct Ranges {
  int64_t per_range = 0, ranges = 0;
  int64_t result_floats = 0, pooled_floats = 0;
};

// Rows one window of the pool reaches over, from its first tap's to its last's.
int64_t pool_window_rows(const MaxPool2dParams& pool) {
  return (pool.kernel_h - 1) * pool.dilation_h + 1;
}

// The convolution's rows [first, end) under pool rows [begin, end) (conv_h rows in all).
std::pair<int64_t, int64_t> rows_under_pool(const MaxPool2dParams& pool, int64_t begin, int64_t end, int64_t conv_h) {
  return {std::max<int64_t>(0, begin * pool.stride_h - pool.padding_h),
          std::min(conv_h, (end - 1) * pool.stride_h - pool.padding_h + pool_window_rows(pool))};
}

Ranges ranges_of(const Geometry& g, const MaxPool2dParams* pool, const Shape& conv_shape, const Shape& out_shape,
                 int64_t task_images, int64_t images_times_blocks, int num_threads) {
  Ranges r;
  if (!pool) {
    const int64_t pixels = task_images * out_shape[2] * out_shape[3];
    r.per_range = tiles_per_task(g, pixels, images_times_blocks, num_threads);
    r.ranges = ceil_div(ceil_div(pixels, g.pixels_per_tile), r.per_range);
    r.result_floats = r.per_range * g.pixels_per_tile * g.block_channels;
    return r;
  }
  const int64_t pool_h = out_shape[2], pool_w = out_shape[3], conv_w = conv_shape[3];
  auto result_floats = [&](int64_t rows) {
    const int64_t conv_rows = (rows - 1) * pool->stride_h + pool_window_rows(*pool);
    return ceil_div(conv_rows * conv_w, g.pixels_per_tile) * g.pixels_per_tile * g.block_channels;
  };
  // Every range computes a row or more that its neighbour computes too, so ranges are as long as
  // the buffer allows, and two per thread where the batch is small (ranges of the pool's rows are
  // all alike, unlike tiles near a plane's end). ResNet-50's stem and pool at batch 8 (7 ranges of
  // 17 convolution rows an image with half the buffer, 4 of up to 35 now), eight profiles each:
  // 8.1-9.3 ms (median 8.5) -> 7.7-8.2 (8.0); at batch 1 (8 ranges of 15 rows, now 4 of 29):
  // 1.05-1.07 -> 1.01-1.02.
  int64_t by_buffer = 1;
  while (by_buffer < pool_h && result_floats(by_buffer + 1) <= pooled_buffer_floats) ++by_buffer;
  const int64_t wanted_ranges = ceil_div(2 * num_threads, images_times_blocks);
  r.per_range = std::clamp<int64_t>(ceil_div(pool_h, wanted_ranges), 1, by_buffer);
  r.ranges = ceil_div(pool_h, r.per_range);
  r.result_floats = result_floats(r.per_range);
  r.pooled_floats = r.per_range * pool_w * g.block_channels;
  return r;
}

// The pool's rows [begin, end) (pool_w outputs each) of one channel block's results (pixels,
// block channels) for the convolution's rows from first_row on (conv_w pixels each), into pooled
// (pixels, block channels). Windows skip what lies outside the convolution's output.
void pool_results(const MaxPool2dParams& pool, const Geometry& g, const float* results, int64_t first_row,
                  int64_t conv_h, int64_t conv_w, int64_t begin, int64_t end, int64_t pool_w, float* pooled) {
  for (int64_t py = begin; py < end; ++py) {
    for (int64_t px = 0; px < pool_w; ++px, pooled += g.block_channels) {
      SimdVector best[4];
      for (int64_t v = 0; v < g.vectors; ++v) best[v] = -__builtin_huge_valf() - SimdVector{};
      max_pool2d_for_each_tap(pool, conv_h, conv_w, py, px, [&](int64_t y, int64_t x) {
        const float* pixel = results + ((y - first_row) * conv_w + x) * g.block_channels;
        for (int64_t v = 0; v < g.vectors; ++v) {
          const SimdVector value = simd_load(pixel + v * simd_floats);
          best[v] = (value > best[v]) | (value != value) ? value : best[v];  // NaN wins, as in PyTorch
        }
      });
      for (int64_t v = 0; v < g.vectors; ++v) simd_store(pooled + v * simd_floats, best[v]);
    }
  }
}

// The mean over channels of results (pixels, block channels, all the convolution's channels in
// one block) after bias and ReLU, for pixels [begin, end) of the task's, which start at
// first_pixel, into means. `bias` holds a vector per block vector, zero past the last channel,
// whose results are zero too (their weights are).
void mean_results(const Geometry& g, const float* results, int64_t first_pixel, int64_t begin, int64_t end,
                  const SimdVector* bias, bool relu, int64_t channels, float* means) {
  auto lanes_of = [&](int64_t pixel) {  // the pixel's channels summed into one vector's lanes
    const float* values = results + (pixel - first_pixel) * g.block_channels;
    SimdVector sum{};
    for (int64_t v = 0; v < g.vectors; ++v) {
      const SimdVector value = simd_load(values + v * simd_floats) + bias[v];
      sum += relu ? (value > 0.0f ? value : SimdVector{}) : value;
    }
    return sum;
  };
  // A vector's worth of pixels at a time: their lane sums transposed, so that adding the rows
  // sums every pixel's lanes at once, in the same order as lane by lane below. Lane by lane each
  // pixel was a chain of dependent additions: ResNet-50's stem with its pool and means at batch 8
  // took 8.4 ms against 7.4 without the means, now 7.7 (a harness of the fused step).
  int64_t pixel = begin;
  for (; pixel + simd_floats <= end; pixel += simd_floats) {
    SimdVector sums[simd_floats];
    for (int64_t i = 0; i < simd_floats; ++i) sums[i] = lanes_of(pixel + i);
    simd_transpose(sums);
    SimdVector total = sums[0];
    for (int64_t lane = 1; lane < simd_floats; ++lane) total += sums[lane];
    simd_store(means + pixel, total / static_cast<float>(channels));
  }
  for (; pixel < end; ++pixel) {
    means[pixel] = simd_sum(lanes_of(pixel)) / static_cast<float>(channels);
  }
}

// The cache lines of a task's output in one image (`planes` planes, plane_stride floats apart from
// first_plane on, pixels [begin, end) of each), asked for with intent to write, an equal share
// before each of `calls` kernel calls. The output of a bottleneck's last 1x1 holds the shortcut it
// adds in place, written several layers before and since gone to L3, memory or the other core's
// cache. direct_write_results asks for each group of planes a group ahead as well, which alone
// left the first groups waiting; all of them at once at the task's start pushed its working set
// out of L1 (see there), a share a call does not. ResNet-50 at batch 1, three runs of 150
// alternating passes: layer3's five later conv3s 1.96-2.00 -> 1.85-1.88 ms a pass, layer4's two
// 0.77 -> 0.75-0.76; the rest alike.
class OutputPrefetch {
 public:
  OutputPrefetch(float* first_plane, int64_t planes, int64_t plane_stride, int64_t begin, int64_t end, int64_t calls)
      : first_line_(first_plane + begin / floats_per_cache_line * floats_per_cache_line),
        plane_stride_(plane_stride),
        per_plane_(end > begin ? (end - 1) / floats_per_cache_line - begin / floats_per_cache_line + 1 : 0),
        lines_(planes * per_plane_),
        share_(calls > 0 ? ceil_div(lines_, calls) : 0) {}

  void before_call(int64_t call) const {
    for (int64_t i = call * share_; i < std::min(lines_, (call + 1) * share_); ++i) {
      prefetch_for_write(first_line_ + i / per_plane_ * plane_stride_ + i % per_plane_ * floats_per_cache_line);
    }
  }

 private:
  const float* first_line_;
  int64_t plane_stride_, per_plane_, lines_, share_;
};

int64_t images_per_chunk(const Conv2dParams& p, const Geometry& g, int64_t batch) {
  if (!g.copied) return batch;
  return std::clamp<int64_t>(copied_chunk_floats / (p.in_channels * g.image_h * g.image_w), 1, batch);
}

// Copies images [first, first + count) into `to` (count, C_in, image_h, image_w): with a zero
// border of the convolution's padding, or only the pixels a strided 1x1 window reads. Shared out
// by planes or, `by_rows`, each thread a band of rows of every plane, the images' rows one after
// the other: where the tasks' ranges go outside blocks, a thread's own tasks then read the rows it
// copied, from its own cache, not the other core's. ResNet-50's layer2.0.conv2 at batch 1 (the
// convolution with its copy), 150 passes of each way alternating in one process, three times:
// 1.08 -> 0.95, 1.03 -> 0.94, 1.00 -> 0.91 ms.
void copy_images(const Conv2dParams& p, const Geometry& g, ConstTensorView input, int64_t first, int64_t count,
                 bool by_rows, float* to, int num_threads) {
  const int64_t height = input.dim(2), width = input.dim(3);
  // Rows [y_begin, y_end) of plane `plane` (image, channel) of the copy.
  auto copy_rows = [&](int64_t plane, int64_t y_begin, int64_t y_end) {
    const float* from = input.data + (first * p.in_channels + plane) * height * width;
    float* image = to + plane * g.image_h * g.image_w;
    for (int64_t y = y_begin; y < y_end; ++y) {
      float* row = image + y * g.image_w;
      if (g.subsampled) {
        const float* source = from + y * p.stride_h * width;
        for (int64_t x = 0; x < g.image_w; ++x) row[x] = source[x * p.stride_w];
        continue;
      }
      const int64_t source_y = y - p.padding_h;
      if (source_y < 0 || source_y >= height) {
        std::fill(row, row + g.image_w, 0.0f);
        continue;
      }
      std::fill(row, row + p.padding_w, 0.0f);
      std::memcpy(row + p.padding_w, from + source_y * width, width * sizeof(float));
      std::fill(row + p.padding_w + width, row + g.image_w, 0.0f);
    }
  };
  if (!by_rows) {
#pragma omp parallel for schedule(static) num_threads(num_threads)
    for (int64_t plane = 0; plane < count * p.in_channels; ++plane) copy_rows(plane, 0, g.image_h);
    return;
  }
  const int64_t rows = count * g.image_h;
#pragma omp parallel for schedule(static) num_threads(num_threads)
  for (int64_t band = 0; band < num_threads; ++band) {
    const int64_t begin = rows * band / num_threads, end = rows * (band + 1) / num_threads;
    for (int64_t n = begin / g.image_h; n * g.image_h < end; ++n) {
      const int64_t y_begin = std::max<int64_t>(0, begin - n * g.image_h);
      const int64_t y_end = std::min(g.image_h, end - n * g.image_h);
      for (int64_t c = 0; c < p.in_channels; ++c) copy_rows(n * p.in_channels + c, y_begin, y_end);
    }
  }
}

}  // namespace

Conv2dDirectWeights conv2d_direct_pack_weights(const Conv2dParams& p, const float* weight, const Shape& input_shape) {
  const Geometry g = geometry(p, input_shape);
  const int64_t out_per_group = p.out_channels / p.groups;
  const int64_t in_per_group = p.in_channels / p.groups;
  Conv2dDirectWeights packed;
  // (groups, blocks, depth, block_channels); channels past the group's end are zero.
  packed.data = Tensor({p.groups * g.blocks * g.depth * g.block_channels}, Lifetime::lasting);
  for (int64_t oc = 0; oc < p.out_channels; ++oc) {
    const int64_t group = oc / out_per_group, block = oc % out_per_group / g.block_channels;
    const int64_t lane = oc % out_per_group % g.block_channels;
    float* to = packed.data.data() + (group * g.blocks + block) * g.depth * g.block_channels + lane;
    for (int64_t k = 0; k < g.depth; ++k) to[k * g.block_channels] = weight[oc * g.depth + k];
  }
  // Tap k = (ic, ky, kx), in torch's order, reads the image (padded or subsampled) this far from
  // where the output pixel's window starts.
  for (int64_t ic = 0; ic < in_per_group; ++ic) {
    for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
        packed.tap_offsets.push_back((ic * g.image_h + ky * p.dilation_h) * g.image_w + kx * p.dilation_w);
      }
    }
  }
  return packed;
}

int64_t conv2d_direct_workspace_floats(const Conv2dParams& p, const Shape& input_shape, int num_threads,
                                       const MaxPool2dParams* pool) {
  const Geometry g = geometry(p, input_shape);
  const int64_t copies = g.copied ? images_per_chunk(p, g, input_shape[0]) * p.in_channels * g.image_h * g.image_w : 0;
  const Shape conv = conv2d_output_shape(p, input_shape);
  // The largest ranges: one task per thread or more wants them whole, up to what the buffers hold;
  // the most images a task takes are those of the largest chunk.
  const int64_t task_images =
      images_per_task(g, pool, conv[2] * conv[3], images_per_chunk(p, g, input_shape[0]), num_threads);
  const Ranges r = ranges_of(g, pool, conv, pool ? max_pool2d_output_shape(*pool, conv) : conv, task_images,
                             4 * int64_t{num_threads}, num_threads);
  return copies + int64_t{num_threads} * (r.result_floats + r.pooled_floats);
}

bool conv2d_direct_writes_channel_means(const Conv2dParams& p, const MaxPool2dParams& pool, const Shape& input_shape) {
  const Geometry g = geometry(p, input_shape);
  const Shape conv = conv2d_output_shape(p, input_shape);
  const int64_t pool_h = max_pool2d_output_shape(pool, conv)[2];
  return p.groups == 1 && g.blocks == 1 && pool.stride_h <= pool_window_rows(pool) &&
         rows_under_pool(pool, pool_h - 1, pool_h, conv[2]).second == conv[2];
}

void conv2d_direct_forward_cpu(const Conv2dParams& p, ConstTensorView input, const Conv2dDirectWeights& weights,
                               const float* bias, const float* residual, bool relu, TensorView output, float* workspace,
                               int num_threads, const MaxPool2dParams* pool, float* channel_means) {
  if (pool && residual) throw Error("conv2d: a fused max pool takes no residual");
  if (channel_means && !(pool && conv2d_direct_writes_channel_means(p, *pool, input.shape))) {
    throw Error("conv2d: this convolution cannot write its channel means");
  }
  const Geometry g = geometry(p, input.shape);
  const int64_t batch = input.dim(0);
  const Shape conv = conv2d_output_shape(p, input.shape);
  const int64_t conv_h = conv[2], conv_w = conv[3], conv_pixels = conv_h * conv_w;
  const int64_t out_w = output.dim(3), out_pixels = output.dim(2) * out_w;  // the pool's, if fused
  const int64_t in_per_group = p.in_channels / p.groups, out_per_group = p.out_channels / p.groups;
  const int64_t chunk = images_per_chunk(p, g, batch);
  const int64_t image_floats = p.in_channels * g.image_h * g.image_w;  // one image as the kernel reads it
  float* copies = workspace;
  float* thread_buffers = workspace + (g.copied ? chunk * image_floats : 0);
  const DirectKernels kernels(g.vectors, weights.tap_offsets);
  // For the channel means: the bias as vectors of the one block, zero past the last channel.
  SimdVector bias_vectors[4] = {};
  for (int64_t c = 0; channel_means && bias && c < p.out_channels; ++c)
    bias_vectors[c / simd_floats][c % simd_floats] = bias[c];

  for (int64_t first = 0; first < batch; first += chunk) {
    const int64_t count = std::min(chunk, batch - first);
    const int64_t task_images = images_per_task(g, pool, conv_pixels, count, num_threads);
    const int64_t image_runs = ceil_div(count, task_images);
    const Ranges r = ranges_of(g, pool, conv, output.shape, task_images, image_runs * p.groups * g.blocks, num_threads);
    const int64_t tasks = image_runs * p.groups * g.blocks * r.ranges;
    // Task order (images, group, block, range): neighbouring tasks share a block's weights, and
    // with several threads on one image each reads all of its input and its share of the weights.
    // Where the input outweighs the group's weights, ranges go outside blocks instead: each thread
    // then reads its share of the input and all the weights. ResNet-50's layer2.0.conv2 at batch 1
    // (a 3x3 of stride 2 over a padded 58x58 image of 128 channels: 1.7 MB, 0.6 MB of weights):
    // 1.01 -> 0.78 ms, at batch 8 7.15 -> 6.36 (medians of eight and four alternating profiles).
    // A task's block and range are task / stride % count, with these strides.
    const bool ranges_outer =
        r.ranges > 1 && in_per_group * g.image_h * g.image_w > g.blocks * g.depth * g.block_channels;
    if (g.copied) copy_images(p, g, input, first, count, ranges_outer, copies, num_threads);
    const float* images = g.copied ? copies : input.data + first * image_floats;
    const int64_t block_stride = ranges_outer ? 1 : r.ranges, range_stride = ranges_outer ? g.blocks : 1;
    auto group_of = [&](int64_t task) { return task / (g.blocks * r.ranges) % p.groups; };
    auto block_of = [&](int64_t task) { return task / block_stride % g.blocks; };
    auto block_weights_of = [&](int64_t task) {
      return weights.data.data() + (group_of(task) * g.blocks + block_of(task)) * g.depth * g.block_channels;
    };
    // Each thread a run of consecutive tasks, so that it knows whose weights come next, and then
    // the other runs' last tasks if it is done first.
    TaskRuns task_runs(tasks, num_threads);
#pragma omp parallel num_threads(num_threads)
    {
      // Where each pixel of a task's tiles starts reading its window.
      std::vector<const float*> pixel_inputs(r.result_floats / g.block_channels);
      const int thread = omp_get_thread_num();
      float* results = thread_buffers + thread * (r.result_floats + r.pooled_floats);
      float* pooled = results + r.result_floats;
      bool stolen = false;
      for (int64_t task = task_runs.next(thread, &stolen); task >= 0; task = task_runs.next(thread, &stolen)) {
        const int64_t n = task / (p.groups * g.blocks * r.ranges) * task_images;  // the task's first image
        const int64_t run_pixels = std::min(task_images, count - n) * conv_pixels;
        const int64_t group = group_of(task), block = block_of(task);
        const int64_t range = task / range_stride % r.ranges;
        // The convolution's pixels [pixel_begin, pixel_end) this task computes, and the output's
        // [out_begin, out_end) it writes: the same without a pool, counted from image n's first
        // through the images after it.
        int64_t pixel_begin, pixel_end, out_begin, out_end;
        if (pool) {
          out_begin = range * r.per_range;
          out_end = std::min(output.dim(2), out_begin + r.per_range);
          const auto [row_first, row_end] = rows_under_pool(*pool, out_begin, out_end, conv_h);
          pixel_begin = row_first * conv_w;
          pixel_end = row_end * conv_w;
          out_begin *= out_w;
          out_end *= out_w;
        } else {
          pixel_begin = out_begin = range * r.per_range * g.pixels_per_tile;
          pixel_end = out_end = std::min(run_pixels, pixel_begin + r.per_range * g.pixels_per_tile);
          if (pixel_begin >= pixel_end) continue;  // a range past a shorter last run of images
        }
        const int64_t tiles = ceil_div(pixel_end - pixel_begin, g.pixels_per_tile);
        const float* block_weights = block_weights_of(task);
        // A 1x1 window's first pass over a range's input (this thread's first block of the group
        // there: the task of the block before it, block_stride back, is not this thread's) fetches
        // each plane's next line ahead of the tiles. That input was mostly just written by the
        // previous layer's threads, half of it by the other core, whose cache the hardware
        // prefetcher does not read ahead from over hundreds of planes. ResNet-50 at batch 1:
        // layer3's 1024 -> 256 1x1s 0.50 -> 0.39 ms. Windows of several taps read each line again
        // from the next row of taps, and lost a little (the stem 1.05 -> 1.11 ms). Without AVX-512
        // every pass fetches ahead (direct_fetch_input_always).
        const bool first_pass = block == 0 || stolen || task - block_stride < task_runs.own_begin(thread);
        const bool fetch_input_ahead = direct_fetch_input_always || (g.depth == in_per_group && first_pass);
        window_starts(g, images + (n * p.in_channels + group * in_per_group) * g.image_h * g.image_w, image_floats,
                      conv_h, conv_w, pixel_begin, pixel_end, pixel_inputs.data());
        // Depth blocks outermost: one block's weights stay in cache while every tile of the range
        // uses them. Meanwhile the tiles fetch the next block's weights, or the next task's first:
        // they come from memory (ResNet-50's 14x14 3x3 layer took 0.88 ms with its caches flushed
        // against 0.70 warm), and at batch 1 each weight meets few pixels. Each tile asks for an
        // equal share of the lines, one a tap from its first; a tap's worth of lines a tile, all of
        // them went in the first few tiles, queued behind each other (ResNet-50's direct layers, five
        // alternating profiles: 0.27 ms faster in all at batch 1, 1.0 at batch 8).
        for (int64_t k = 0; k < g.depth; k += g.depth_per_block) {
          const int64_t depth = std::min(g.depth_per_block, g.depth - k);
          const bool more_depth = k + depth < g.depth;
          const float* next = more_depth ? block_weights + (k + depth) * g.block_channels
                              : !stolen && task_runs.is_next_of(thread, task + 1) ? block_weights_of(task + 1)
                                                                                  : nullptr;
          const int64_t next_depth = std::min(g.depth_per_block, more_depth ? g.depth - k - depth : g.depth);
          const WeightPrefetch fetch(next, next_depth * g.block_channels / floats_per_cache_line, tiles, depth);
          // With the last depth block, the lines of the output in the range's first image (a pool's output is
          // small and its own).
          const int64_t image = out_begin / out_pixels;
          const OutputPrefetch output_lines(
              output.data + ((first + n + image) * p.out_channels + group * out_per_group + block * g.block_channels) *
                                out_pixels,
              more_depth || pool ? 0 : std::min(g.block_channels, out_per_group - block * g.block_channels), out_pixels,
              out_begin - image * out_pixels, std::min(out_end, (image + 1) * out_pixels) - image * out_pixels, tiles);
          for (int64_t t = 0; t < tiles; ++t) {
            output_lines.before_call(t);
            const DirectTile tile = direct_tile(pixel_end - pixel_begin, tiles, t);
            kernels(tile.pixels)(pixel_inputs.data() + tile.first, weights.tap_offsets.data() + k, depth,
                                 block_weights + k * g.block_channels, results + tile.first * g.block_channels, k > 0,
                                 fetch.first_line(t), fetch.lines(t), fetch_input_ahead);
          }
        }
        // The rows whose windows start in this range have their means written here (the range's
        // first computed row on, up to the next range's first), the sums still in L1.
        if (channel_means) {
          const int64_t own_end = range + 1 < r.ranges
                                      ? rows_under_pool(*pool, out_end / out_w, out_end / out_w + 1, conv_h).first
                                      : conv_h;
          mean_results(g, results, pixel_begin, pixel_begin, own_end * conv_w, bias_vectors, relu, p.out_channels,
                       channel_means + (first + n) * conv_pixels);
        }
        // The pool takes the maxima of the sums: bias and ReLU, which never lower a larger sum
        // below a smaller one, come after it, on a quarter of the values.
        if (pool) {
          pool_results(*pool, g, results, pixel_begin / conv_w, conv_h, conv_w, out_begin / out_w, out_end / out_w,
                       out_w, pooled);
        }
        // The outputs and residuals of images first + n on, each image's part of the range in
        // turn; channels past the group's end are padding.
        for (int64_t begin = out_begin; begin < out_end;) {
          const int64_t image = begin / out_pixels, end = std::min(out_end, (image + 1) * out_pixels);
          const int64_t image_offset = (first + n + image) * p.out_channels * out_pixels;
          direct_write_results((pool ? pooled : results) + (begin - out_begin) * g.block_channels, g.block_channels,
                               std::min(g.block_channels, out_per_group - block * g.block_channels),
                               group * out_per_group + block * g.block_channels, begin - image * out_pixels,
                               end - image * out_pixels, bias, residual ? residual + image_offset : nullptr, relu,
                               output.data + image_offset, out_pixels);
          begin = end;
        }
      }
    }
  }
}

}  // namespace prism
