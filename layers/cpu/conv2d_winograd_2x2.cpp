// layers/cpu/conv2d_winograd_2x2.cpp: 3x3 stride-1 convolution of small images by Winograd's
// minimal filtering F(2x2, 3x3) (Lavin and Gray, 2016). Each 2x2 block of output comes from a 4x4
// patch of input through 16 products instead of 36:
//
//   Y = A^T [ (G g G^T) . (B^T d B) ] A        (. is the element-wise product)
//
// F(4x4, 3x3) (conv2d_winograd.cpp) saves more arithmetic but turns each 3x3 filter into 36
// values, four times the weights: at batch 1 a 14x14 image has 16 of its tiles, too few to pay for
// reading those from memory (where a layer's weights come from once per forward pass). F(2x2, 3x3)
// reads 16/9 of the direct kernel's weights and does 4/9 of its multiply-adds, over the 49 tiles
// of a 14x14 image.
//
// The 16 products, M[xi] (C_out, tiles) = U[xi] (C_out, C_in) * V[xi] (C_in, tiles), run on the
// direct convolution's micro-kernel (layers/cpu/direct_kernel.hpp), a Winograd tile standing for
// its pixel and an input channel for its tap: per block of output channels, the 16 products of a
// range of tile rows land side by side in a buffer in L2, where A^T m A reads them a vector of
// channels at a time and the results go to the output's planes as the direct kernel's do. The
// weights U = G g G^T are transformed and packed once, when the plan is made.
#include <omp.h>

#include <algorithm>
#include <vector>

#include "layers/conv2d.hpp"
#include "layers/cpu/direct_kernel.hpp"
#include "layers/cpu/task_runs.hpp"
#include "layers/cpu/winograd_filter.hpp"

namespace prism {
namespace {

constexpr int64_t points = 16;                         // 4x4 transformed values per tile
constexpr int64_t results_buffer_floats = 1 << 16;     // 256 KiB of products per task: stays in L2
constexpr int64_t transformed_chunk_floats = 1 << 20;  // V of the images transformed at a time: 4 MiB
// Input channels one pass of a product's kernel calls goes through before the next pass adds the
// rest. With 16 vector registers (AVX2: blocks of 16 channels) 64, so that the point's weights for
// them (4 KiB) and the lines of V the calls read stay in L1 from call to call; with all 256 or 512
// at once, both came from L2 again for each call. On an AMD Zen 3, ResNet-50 at batch 1, plans
// alternating in one process (60 passes, twice): layer3's F(2x2) 3x3s 1.27-1.29 -> 1.17-1.22 ms,
// layer4's 1.79 -> 1.55; 32 and 128 gained less. With AVX-512 (64-channel blocks, measured on
// machines with larger L1s and L2s) the whole depth in one pass, as before.
#if defined(__AVX512F__)
constexpr int64_t product_depth_most = int64_t{1} << 30;
#else
constexpr int64_t product_depth_most = 64;
#endif

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

struct Geometry {
  int64_t vectors, block_channels, blocks;  // output channels, as the direct kernel blocks them
  int64_t pixels_per_tile;                  // Winograd tiles per kernel call
  int64_t out_h, out_w, tiles_h, tiles_w;   // per image: 2x2 tiles, the last row and column partial
  // V holds each image's tiles row by row with room for one more per row (tiles_w + 1 a row, the
  // last never used), so that the input transform is one pass over a plane.
  int64_t stored_tiles;      // per image: tiles_h * (tiles_w + 1)
  int64_t images_per_chunk;  // transformed together: V is (16, C_in, tile_stride)
  int64_t tile_stride;       // images_per_chunk * stored_tiles
};

Geometry geometry(const Conv2dParams& p, const Shape& input_shape) {
  Geometry g;
  g.vectors = direct_vectors_for(p.out_channels);
  g.block_channels = g.vectors * simd_floats;
  g.blocks = ceil_div(p.out_channels, g.block_channels);
  g.pixels_per_tile = direct_pixels_per_tile(g.vectors);
  const Shape out = conv2d_output_shape(p, input_shape);
  g.out_h = out[2];
  g.out_w = out[3];
  g.tiles_h = ceil_div(g.out_h, 2);
  g.tiles_w = ceil_div(g.out_w, 2);
  g.stored_tiles = g.tiles_h * (g.tiles_w + 1);
  const int64_t image_floats = points * p.in_channels * g.stored_tiles;
  g.images_per_chunk = std::clamp<int64_t>(transformed_chunk_floats / image_floats, 1, input_shape[0]);
  g.tile_stride = g.images_per_chunk * g.stored_tiles;
  return g;
}

// How an image's tiles are cut into the ranges of its tasks (whole tile rows each), and the floats
// of products and of finished pixels a task keeps.
struct Ranges {
  int64_t rows_per_range = 0, ranges = 0;
  int64_t slots = 0;  // tiles of the largest range
  int64_t result_floats = 0, pixel_floats = 0;
};

// Enough tasks for every thread where the images and channel blocks are fewer, as long as a
// range's products fit the buffer.
Ranges ranges_of(const Geometry& g, int64_t images_times_blocks, int num_threads) {
  Ranges r;
  auto slots_for = [&](int64_t rows) { return rows * g.tiles_w; };
  int64_t by_buffer = 1;
  while (by_buffer < g.tiles_h && points * slots_for(by_buffer + 1) * g.block_channels <= results_buffer_floats) {
    ++by_buffer;
  }
  const int64_t wanted_ranges = ceil_div(num_threads, images_times_blocks);
  r.rows_per_range = std::clamp<int64_t>(ceil_div(g.tiles_h, wanted_ranges), 1, by_buffer);
  r.ranges = ceil_div(g.tiles_h, r.rows_per_range);
  r.slots = slots_for(r.rows_per_range);
  r.result_floats = points * r.slots * g.block_channels;
  r.pixel_floats = std::min(2 * r.rows_per_range, g.out_h) * g.out_w * g.block_channels;
  return r;
}

// Floats of scratch input_transform_plane needs: the padded plane in four parts, and B^T along its
// rows in eight.
int64_t transform_scratch_floats(const Geometry& g) {
  return 12 * (g.tiles_h + 1) * (g.tiles_w + 1);
}

// B^T applied to n columns of four values at once: d0 - d2, d1 + d2, d2 - d1, d1 - d3. Separate
// __restrict parameters tell the compiler the outputs overlap nothing, so the loop vectorises.
void transform_4(int64_t n, const float* __restrict d0, const float* __restrict d1, const float* __restrict d2,
                 const float* __restrict d3, float* __restrict o0, float* __restrict o1, float* __restrict o2,
                 float* __restrict o3) {
  for (int64_t x = 0; x < n; ++x) {
    o0[x] = d0[x] - d2[x];
    o1[x] = d1[x] + d2[x];
    o2[x] = d2[x] - d1[x];
    o3[x] = d1[x] - d3[x];
  }
}

// to[u] = the padded row's column 2 u + parity, for u in [0, count): zero outside the image's
// row `from` (width values, shifted right by padding).
void padded_columns(const float* __restrict from, int64_t width, int64_t padding, int64_t parity, int64_t count,
                    float* __restrict to) {
  const int64_t shift = parity - padding;  // to[u] = from[2 u + shift]
  const int64_t begin = std::clamp<int64_t>((1 - shift) / 2, 0, count);
  const int64_t end = std::clamp<int64_t>(width - shift > 0 ? (width - shift + 1) / 2 : 0, begin, count);
  std::fill(to, to + begin, 0.0f);
  for (int64_t u = begin; u < end; ++u) to[u] = from[2 * u + shift];
  std::fill(to + end, to + count, 0.0f);
}

// B^T d B for every tile of one input channel of one image: V receives the 16 values of tile
// (ty, tx) at v[xi * point_stride + ty * (tiles_w + 1) + tx]. The tile reads rows 2 ty + [0, 4)
// and columns 2 tx + [0, 4) of the input with its zero border. The padded plane is split by the
// parity of its rows and of its columns into four, so that the tile's patch columns are even[tx],
// odd[tx], even[tx + 1], odd[tx + 1] of its rows, and its patch rows the same of the parts' rows:
// B^T along the rows and then down the columns are each one plain loop over the whole plane (the
// values that straddle two rows are computed and never read).
void input_transform_plane(const Conv2dParams& p, const Geometry& g, const float* plane, int64_t height, int64_t width,
                           float* v, int64_t point_stride, float* scratch) {
  const int64_t half = g.tiles_w + 1, size = (g.tiles_h + 1) * half;  // one part: (tiles_h + 1, half)
  float* parts = scratch;                                             // [row parity][column parity]
  float* across = scratch + 4 * size;                                 // [row parity][B^T's row]
  for (int64_t y = 0; y < 2 * g.tiles_h + 2; ++y) {
    const int64_t source = y - p.padding_h;
    for (int64_t parity = 0; parity < 2; ++parity) {
      float* to = parts + ((y % 2) * 2 + parity) * size + y / 2 * half;
      if (source < 0 || source >= height) {
        std::fill(to, to + half, 0.0f);
      } else {
        padded_columns(plane + source * width, width, p.padding_w, parity, half, to);
      }
    }
  }
  for (int64_t rows = 0; rows < 2; ++rows) {
    const float *even = parts + 2 * rows * size, *odd = even + size;
    float* out = across + 4 * rows * size;
    transform_4(size - 1, even, odd, even + 1, odd + 1, out, out + size, out + 2 * size, out + 3 * size);
  }
  const int64_t tiles = g.tiles_h * half;
  for (int64_t j = 0; j < 4; ++j) {
    const float *even = across + j * size, *odd = across + (4 + j) * size;
    float* out = v + j * point_stride;
    transform_4(tiles, even, odd, even + half, odd + half, out, out + 4 * point_stride, out + 8 * point_stride,
                out + 12 * point_stride);
  }
}

// Asks for the cache lines of one plane's transformed values (16 points of stored_tiles values
// each, from v_plane on) with intent to write. V's lines were last read by every thread (the
// previous layer's or chunk's products), so a store would find them in another core's cache or
// gone from this one's and wait; asked for while the plane before is transformed, they arrive in
// time. ResNet-50 at batch 1, three runs of 150 alternating passes: layer3's five F(2x2) 3x3s
// 2.95-3.49 -> 2.84-3.34 ms a pass, layer4's two 1.49-1.67 -> 1.42-1.64 (a harness of one layer:
// the input transform 0.13 -> 0.11 ms of 0.6).
void prefetch_plane_for_writing(const Geometry& g, const float* v_plane, int64_t point_stride) {
  for (int64_t xi = 0; xi < points; ++xi) {
    for (int64_t f = 0; f < g.stored_tiles; f += floats_per_cache_line) {
      prefetch_for_write(v_plane + xi * point_stride + f);
    }
  }
}

// A^T m A for the tiles of tile rows [row_begin, row_end) of one block of output channels: m
// (16, slots, block channels) holds their products from the range's first tile on, pixels
// receives (output rows from 2 row_begin on, out_w, block channels). A^T's rows: m0 + m1 + m2 and
// m1 - m2 - m3.
void output_transform_range(const Geometry& g, const float* m, int64_t slots, int64_t row_begin, int64_t row_end,
                            float* pixels) {
  const int64_t point_stride = slots * g.block_channels;
  for (int64_t ty = row_begin; ty < row_end; ++ty) {
    for (int64_t tx = 0; tx < g.tiles_w; ++tx) {
      const float* tile = m + ((ty - row_begin) * g.tiles_w + tx) * g.block_channels;
      for (int64_t vector = 0; vector < g.vectors; ++vector) {
        SimdVector value[points];
        for (int64_t xi = 0; xi < points; ++xi) value[xi] = simd_load(tile + xi * point_stride + vector * simd_floats);
        SimdVector top[4], bottom[4];  // A^T down the 4x4 products' columns
        for (int64_t j = 0; j < 4; ++j) {
          top[j] = value[j] + value[4 + j] + value[8 + j];
          bottom[j] = value[4 + j] - value[8 + j] - value[12 + j];
        }
        const SimdVector out[2][2] = {{top[0] + top[1] + top[2], top[1] - top[2] - top[3]},
                                      {bottom[0] + bottom[1] + bottom[2], bottom[1] - bottom[2] - bottom[3]}};
        for (int64_t a = 0; a < 2 && 2 * ty + a < g.out_h; ++a) {
          for (int64_t b = 0; b < 2 && 2 * tx + b < g.out_w; ++b) {
            const int64_t pixel = (2 * (ty - row_begin) + a) * g.out_w + 2 * tx + b;
            simd_store(pixels + pixel * g.block_channels + vector * simd_floats, out[a][b]);
          }
        }
      }
    }
  }
}

}  // namespace

bool conv2d_winograd_2x2_applies(const Conv2dParams& p) {
  return p.kernel_h == 3 && p.kernel_w == 3 && p.stride_h == 1 && p.stride_w == 1 && p.dilation_h == 1 &&
         p.dilation_w == 1 && p.groups == 1;
}

int64_t conv2d_winograd_2x2_image_tiles(const Conv2dParams& p, const Shape& input_shape) {
  const Geometry g = geometry(p, input_shape);
  return g.tiles_h * g.tiles_w;
}

Conv2dDirectWeights conv2d_winograd_2x2_pack_weights(const Conv2dParams& p, const float* weight,
                                                     const Shape& input_shape) {
  // U[xi] = (G g G^T)[xi] for every (co, ci), in double, into (blocks, 16, C_in, block channels);
  // channels past the last are zero.
  static constexpr double transform[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  const Geometry g = geometry(p, input_shape);
  Conv2dDirectWeights packed;
  packed.data = Tensor({g.blocks * points * p.in_channels * g.block_channels}, Lifetime::lasting);
#pragma omp parallel for schedule(static)
  for (int64_t co = 0; co < p.out_channels; ++co) {
    float* block = packed.data.data() + co / g.block_channels * points * p.in_channels * g.block_channels;
    for (int64_t ci = 0; ci < p.in_channels; ++ci) {
      double u[4][4];
      winograd_filter_transform(transform, weight + (co * p.in_channels + ci) * 9, u);
      for (int64_t xi = 0; xi < points; ++xi) {
        block[(xi * p.in_channels + ci) * g.block_channels + co % g.block_channels] =
            static_cast<float>(u[xi / 4][xi % 4]);
      }
    }
  }
  // Tap ci of a tile reads V[xi] this far from the tile's own value of channel 0.
  for (int64_t ci = 0; ci < p.in_channels; ++ci) packed.tap_offsets.push_back(ci * g.tile_stride);
  return packed;
}

int64_t conv2d_winograd_2x2_workspace_floats(const Conv2dParams& p, const Shape& input_shape, int num_threads) {
  const Geometry g = geometry(p, input_shape);
  const Ranges r = ranges_of(g, num_threads, num_threads);  // a range an image: the largest
  return points * p.in_channels * g.tile_stride +
         int64_t{num_threads} * (r.result_floats + r.pixel_floats + transform_scratch_floats(g));
}

void conv2d_winograd_2x2_forward_cpu(const Conv2dParams& p, ConstTensorView input, const Conv2dDirectWeights& weights,
                                     const float* bias, const float* residual, bool relu, TensorView output,
                                     float* workspace, int num_threads) {
  const Geometry g = geometry(p, input.shape);
  const int64_t batch = input.dim(0), height = input.dim(2), width = input.dim(3);
  const int64_t out_pixels = g.out_h * g.out_w;
  const int64_t point_stride = p.in_channels * g.tile_stride;              // from V[xi] to V[xi + 1]
  const int64_t block_floats = points * p.in_channels * g.block_channels;  // one block's 16 matrices
  const int64_t point_lines = p.in_channels * g.block_channels / floats_per_cache_line;
  const int64_t pass_depth = std::min(product_depth_most, p.in_channels);  // input channels a pass
  const int64_t passes = ceil_div(p.in_channels, pass_depth);
  const DirectKernels kernels(g.vectors, weights.tap_offsets);
  float* v = workspace;
  float* thread_buffers = workspace + points * point_stride;
  for (int64_t first = 0; first < batch; first += g.images_per_chunk) {
    const int64_t count = std::min(g.images_per_chunk, batch - first);
    const Ranges r = ranges_of(g, count * g.blocks, num_threads);
    const int64_t tasks = g.blocks * count * r.ranges;  // in order (block, image, range)
    const int64_t kernel_calls = ceil_div(r.slots, g.pixels_per_tile);  // those of the largest range
    const int64_t per_thread = r.result_floats + r.pixel_floats + transform_scratch_floats(g);
    // Step 1's planes and step 2's tasks: each thread a run of consecutive ones (in step 2 so
    // that it knows whose weights come next), and then the other runs' last ones if it is done
    // first.
    TaskRuns plane_runs(count * p.in_channels, num_threads), task_runs(tasks, num_threads);
#pragma omp parallel num_threads(num_threads)
    {
      const int thread = omp_get_thread_num();
      float* results = thread_buffers + thread * per_thread;
      float* pixels = results + r.result_floats;
      float* scratch = pixels + r.pixel_floats;
      // 1. V[xi][ci][t] = (B^T d B)[xi] for every channel of every image: planes shared out.
      auto v_plane = [&](int64_t plane) {
        return v + plane % p.in_channels * g.tile_stride + plane / p.in_channels * g.stored_tiles;
      };
      for (int64_t plane = plane_runs.next(thread); plane >= 0; plane = plane_runs.next(thread)) {
        if (plane + 1 < count * p.in_channels) prefetch_plane_for_writing(g, v_plane(plane + 1), point_stride);
        const int64_t n = plane / p.in_channels, ci = plane % p.in_channels;
        input_transform_plane(p, g, input.data + ((first + n) * p.in_channels + ci) * height * width, height, width,
                              v_plane(plane), point_stride, scratch);
      }
#pragma omp barrier
      // 2. The 16 products of each task's tiles, each kernel call fetching a share of the next
      // product's weights (or the next task's, where this thread's run goes on).
      std::vector<const float*> tile_inputs(r.slots);
      bool stolen = false;
      for (int64_t task = task_runs.next(thread, &stolen); task >= 0; task = task_runs.next(thread, &stolen)) {
        const int64_t block = task / (count * r.ranges), n = task / r.ranges % count, range = task % r.ranges;
        const int64_t row_begin = range * r.rows_per_range, row_end = std::min(g.tiles_h, row_begin + r.rows_per_range);
        const int64_t tile_begin = row_begin * g.tiles_w, tile_count = (row_end - row_begin) * g.tiles_w;
        const int64_t calls = ceil_div(tile_count, g.pixels_per_tile);
        const float* block_weights = weights.data.data() + block * block_floats;
        const float* next_task_weights = !stolen && task_runs.is_next_of(thread, task + 1)
                                             ? weights.data.data() + (task + 1) / (count * r.ranges) * block_floats
                                             : nullptr;
        for (int64_t xi = 0; xi < points; ++xi) {
          const float* point_weights = block_weights + xi * p.in_channels * g.block_channels;
          const float* next = xi + 1 < points ? point_weights + p.in_channels * g.block_channels : next_task_weights;
          const WeightPrefetch fetch(next, point_lines, passes * kernel_calls, pass_depth);
          const float* image = v + xi * point_stride + n * g.stored_tiles;
          for (int64_t slot = 0; slot < tile_count; ++slot) {
            const int64_t tile = tile_begin + slot;
            tile_inputs[slot] = image + tile / g.tiles_w * (g.tiles_w + 1) + tile % g.tiles_w;
          }
          for (int64_t pass = 0; pass < passes; ++pass) {
            const int64_t k = pass * pass_depth, depth = std::min(pass_depth, p.in_channels - k);
            for (int64_t call = 0; call < calls; ++call) {
              const DirectTile tile = direct_tile(tile_count, calls, call);
              kernels(tile.pixels)(tile_inputs.data() + tile.first, weights.tap_offsets.data() + k, depth,
                                   point_weights + k * g.block_channels,
                                   results + (xi * r.slots + tile.first) * g.block_channels, pass > 0,
                                   fetch.first_line(pass * kernel_calls + call),
                                   fetch.lines(pass * kernel_calls + call), direct_fetch_input_always);
            }
          }
        }
        // 3. Y = A^T M A, then bias, residual and ReLU on the way to the output's planes.
        output_transform_range(g, results, r.slots, row_begin, row_end, pixels);
        const int64_t image_offset = (first + n) * p.out_channels * out_pixels;
        direct_write_results(
            pixels, g.block_channels, std::min(g.block_channels, p.out_channels - block * g.block_channels),
            block * g.block_channels, 2 * row_begin * g.out_w, std::min(2 * row_end, g.out_h) * g.out_w, bias,
            residual ? residual + image_offset : nullptr, relu, output.data + image_offset, out_pixels);
      }
    }
  }
}

}  // namespace prism
