// layers/cpu/conv2d_winograd.cpp: 3x3 stride-1 convolution by Winograd's minimal filtering
// F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Each
// 4x4 block of output comes from a 6x6 patch of input through 36 products instead of 144:
//
//   Y = A^T [ (G g G^T) . (B^T d B) ] A        (. is the element-wise product)
//
// Summed over input channels, the 36 element-wise products become 36 matrix products
// M[xi] (C_out, tiles) = U[xi] (C_out, C_in) * V[xi] (C_in, tiles), run by the packed GEMM. The
// weights U = G g G^T are transformed and packed once, when the plan is made. A 2x2 max pool of
// stride 2 after the convolution (VGG's) is taken from each 4x4 tile of results in the output
// transform. Leaves out strides, dilation and groups (im2col + GEMM handles those).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "engine/error.hpp"
#include "layers/conv2d.hpp"
#include "layers/cpu/gemm.hpp"
#include "layers/cpu/task_runs.hpp"
#include "layers/cpu/winograd_filter.hpp"

namespace prism {
namespace {

constexpr int64_t tile = 4;             // output pixels per tile side
constexpr int64_t patch = 6;            // input pixels per tile side: tile + 3 - 1
constexpr int64_t points = 36;          // patch * patch transformed values per tile and channel
constexpr int64_t smallest_tiles = 32;  // fewer: im2col was faster (measured on ResNet-50 shapes)

struct TileGeometry {
  int64_t out_h, out_w;             // the convolution's output (before a fused pool)
  int64_t tiles_h, tiles_w, tiles;  // per image, and over the batch
};

TileGeometry tile_geometry(int64_t batch, int64_t out_h, int64_t out_w) {
  const int64_t tiles_h = (out_h + tile - 1) / tile, tiles_w = (out_w + tile - 1) / tile;
  return {out_h, out_w, tiles_h, tiles_w, batch * tiles_h * tiles_w};
}

int64_t round_up(int64_t n, int64_t multiple) {
  return (n + multiple - 1) / multiple * multiple;
}

// Tiles per chunk: the transformed input and output of one chunk, (36, C_in, chunk) and
// (36, C_out, chunk), stay near 8 MiB, in whole GEMM panels. At least 4 panels, so that each
// panel of the transformed weights is used 4 times once fetched (measured on vgg16's layers:
// 48-tile chunks were up to 1.6x slower, the transformed weights streaming from memory).
constexpr int64_t smallest_chunk = 4 * gemm_columns_per_panel;
int64_t tiles_per_chunk(const Conv2dParams& p) {
  const int64_t budget_floats = int64_t{1} << 21;
  const int64_t per_tile = points * (p.in_channels + p.out_channels);
  const int64_t chunk = budget_floats / per_tile / gemm_columns_per_panel * gemm_columns_per_panel;
  return std::clamp<int64_t>(chunk, smallest_chunk, 10 * gemm_columns_per_panel);
}

// Tiles per chunk where every thread takes chunks of its own: of the sizes from the
// smallest worth a chunk (or an equal share, where the tiles give each thread fewer) up to
// tiles_per_chunk (and at most an equal share, so that every thread gets one), the one whose
// chunks are done soonest. A chunk costs its products' vectors of columns (a part-filled vector
// costs a whole one) and its tiles' transforms; the threads take the equal chunks (a run of them
// each) and the last, smaller one goes to the first thread free. Whole panels per chunk and as
// many as fitted gave ResNet-50's 14x14 3x3s at batch 8 chunks of 96 and 32 tiles (one thread idle
// a third of the time: 5.4 ms each, 4.0 as two of 64), its 56x56 ones at batch 1 chunks of 144
// and 52 (0.76 ms, 0.60 as two of 98).
int64_t balanced_chunk(const Conv2dParams& p, int64_t tiles, int num_threads) {
  const int64_t share = (tiles + num_threads - 1) / num_threads;
  const int64_t smallest = std::min(smallest_chunk, share), largest = std::min(tiles_per_chunk(p), share);
  const double per_column = static_cast<double>(p.in_channels) * p.out_channels;
  const double per_tile = 8.0 * static_cast<double>(p.in_channels + p.out_channels);
  auto cost = [&](int64_t count) { return round_up(count, simd_floats) * per_column + count * per_tile; };
  auto finish = [&](int64_t chunk) {
    const int64_t chunks = (tiles + chunk - 1) / chunk, rounds = (chunks - 1) / num_threads;
    const bool last_alone = (chunks - 1) % num_threads == 0;  // the others' chunks even: it adds to one
    return last_alone ? rounds * cost(chunk) + cost(tiles - (chunks - 1) * chunk) : (rounds + 1) * cost(chunk);
  };
  // Candidates from the largest down (a tie keeps the larger): whole vectors, and equal shares.
  int64_t best = largest;
  auto consider = [&](int64_t chunk) {
    if (chunk >= smallest && chunk <= largest && finish(chunk) < finish(best)) best = chunk;
  };
  for (int64_t chunk = largest / simd_floats * simd_floats; chunk >= smallest; chunk -= simd_floats) consider(chunk);
  const int64_t fewest = (tiles + largest - 1) / largest;
  for (int64_t chunks = fewest; chunks <= fewest + 4 * num_threads; ++chunks) consider((tiles + chunks - 1) / chunks);
  return best;
}

// Tiles per chunk for this many tiles: fewer than a GEMM panel per thread, chunks the threads share
// (ResNet-50's 28x28 3x3s at batch 1, 49 tiles: 0.61-0.65 ms against 0.67-0.70 as chunks of 25
// and 24); else each its own.
int64_t chunk_tiles(const Conv2dParams& p, int64_t tiles, int num_threads) {
  return tiles < num_threads * gemm_columns_per_panel ? std::min(tiles, tiles_per_chunk(p))
                                                      : balanced_chunk(p, tiles, num_threads);
}

// One thread's chunk: V, M and the GEMM's packed B. Threads sharing a chunk need V and M once and a
// packed B each, which num_threads times this covers.
int64_t chunk_workspace_floats(const Conv2dParams& p, int64_t chunk) {
  return points * (p.in_channels + p.out_channels) * chunk + gemm_workspace_floats(p.in_channels, chunk);
}

// A chunk's tiles, row by row: tiles [begin, end) of tile row th of image n. Their columns in V
// and M (the chunk's transformed input and products) start at `column`.
struct TileRow {
  int64_t n, th, begin, end, column;
};

std::vector<TileRow> tile_rows(const TileGeometry& g, int64_t first, int64_t count) {
  std::vector<TileRow> rows;
  for (int64_t t = first; t < first + count;) {
    const int64_t row = t / g.tiles_w, begin = t % g.tiles_w;
    const int64_t end = std::min(g.tiles_w, begin + first + count - t);
    rows.push_back({row / g.tiles_h, row % g.tiles_h, begin, end, t - first});
    t += end - begin;
  }
  return rows;
}

// Tile rows transformed together: enough for about 64 tiles, so that the loops over tiles are long
// enough to vectorise well even where a row has 4 tiles (14x14 images).
int64_t rows_per_group(int64_t tiles_w) {
  return std::max<int64_t>(1, 64 / tiles_w);
}

// Groups of `row_count` tile rows (tile_rows' of a chunk): the transforms' items per channel.
int64_t row_groups(int64_t row_count, int64_t tiles_w) {
  const int64_t group_rows = rows_per_group(tiles_w);
  return (row_count + group_rows - 1) / group_rows;
}

// Scratch floats for one group's transforms (the larger of the input and the output side).
int64_t group_scratch_floats(int64_t tiles_w) {
  const int64_t rows = rows_per_group(tiles_w), span = rows * tile * (tiles_w + 1);
  return std::max(27 * span, 40 * rows * tiles_w);
}

// B^T applied to n columns of six values at once: o_i[x] = sum_k B^T[i][k] d_k[x]. Separate
// __restrict parameters tell the compiler the outputs overlap nothing, so the loop vectorises.
void input_transform_6(int64_t n, const float* __restrict d0, const float* __restrict d1, const float* __restrict d2,
                       const float* __restrict d3, const float* __restrict d4, const float* __restrict d5,
                       float* __restrict o0, float* __restrict o1, float* __restrict o2, float* __restrict o3,
                       float* __restrict o4, float* __restrict o5) {
  for (int64_t x = 0; x < n; ++x) {
    o0[x] = 4.0f * d0[x] - 5.0f * d2[x] + d4[x];
    o1[x] = -4.0f * (d1[x] + d2[x]) + d3[x] + d4[x];
    o2[x] = 4.0f * (d1[x] - d2[x]) - d3[x] + d4[x];
    o3[x] = 2.0f * (d3[x] - d1[x]) - d2[x] + d4[x];
    o4[x] = 2.0f * (d1[x] - d3[x]) - d2[x] + d4[x];
    o5[x] = 4.0f * d1[x] - 5.0f * d3[x] + d5[x];
  }
}

// A^T applied to n columns of six values: four outputs each.
void output_transform_6(int64_t n, const float* __restrict m0, const float* __restrict m1, const float* __restrict m2,
                        const float* __restrict m3, const float* __restrict m4, const float* __restrict m5,
                        float* __restrict o0, float* __restrict o1, float* __restrict o2, float* __restrict o3) {
  for (int64_t x = 0; x < n; ++x) {
    const float sum12 = m1[x] + m2[x], difference12 = m1[x] - m2[x];
    const float sum34 = m3[x] + m4[x], difference34 = m3[x] - m4[x];
    o0[x] = m0[x] + sum12 + sum34;
    o1[x] = difference12 + 2.0f * difference34;
    o2[x] = sum12 + 4.0f * sum34;
    o3[x] = difference12 + 8.0f * difference34 + m5[x];
  }
}

// The same plus bias, the four outputs of column x going to out[4x + 0..3]: one row of 4x4
// output tiles, side by side.
void output_transform_6_interleaved(int64_t n, const float* __restrict m0, const float* __restrict m1,
                                    const float* __restrict m2, const float* __restrict m3, const float* __restrict m4,
                                    const float* __restrict m5, float bias, float* __restrict out) {
  for (int64_t x = 0; x < n; ++x) {
    const float sum12 = m1[x] + m2[x], difference12 = m1[x] - m2[x];
    const float sum34 = m3[x] + m4[x], difference34 = m3[x] - m4[x];
    out[tile * x] = m0[x] + sum12 + sum34 + bias;
    out[tile * x + 1] = difference12 + 2.0f * difference34 + bias;
    out[tile * x + 2] = sum12 + 4.0f * sum34 + bias;
    out[tile * x + 3] = difference12 + 8.0f * difference34 + m5[x] + bias;
  }
}

// to[x] = max(from[x] + residual[x], floor), residual possibly null: a finished output row. The
// residual may be `to` itself (added in place).
void finish_row(int64_t n, const float* __restrict from, const float* residual, float floor, float* to) {
  if (residual) {
    for (int64_t x = 0; x < n; ++x) to[x] = std::max(from[x] + residual[x], floor);
  } else {
    for (int64_t x = 0; x < n; ++x) to[x] = std::max(from[x], floor);
  }
}

// B^T d B for one input channel and the tiles of a group of tile rows: v receives (36, tiles) at
// each row's column, consecutive points xi_stride floats apart. B^T is applied down the columns of
// six input rows first (plain loops along the row, which the compiler vectorises), then along the
// rows. Patch column j of tile u is input column 4u + j, so the second pass reads the rows split
// into their four phases (column mod 4), and its loops too run over consecutive tiles. The tile
// rows of the group lie side by side, each in a segment of 4 (tiles_w + 1) columns; the one result
// per segment that straddles two of them is computed and dropped.
void input_transform_rows(const Conv2dParams& p, const float* image_channel, int64_t image_stride, int64_t height,
                          int64_t width, const TileRow* rows, int64_t row_count, int64_t tiles_w, float* v,
                          int64_t xi_stride, float* scratch) {
  const int64_t segment = tiles_w + 1, span = row_count * tile * segment;  // phases per row, columns in all
  const int64_t phase_length = row_count * segment;
  float* padded = scratch;                     // (6, span): the input, zero outside the image
  float* vertical = padded + patch * span;     // (6, span): B^T applied down each column
  float* phases = vertical + patch * span;     // (6, 4, phase_length): vertical[i][4u + q]
  float* transformed = phases + patch * span;  // (36, phase_length)
  for (int64_t k = 0; k < patch; ++k) {
    std::fill(padded + k * span, padded + (k + 1) * span, 0.0f);
    for (int64_t r = 0; r < row_count; ++r) {
      const TileRow& row = rows[r];
      const int64_t y = row.th * tile - p.padding_h + k, left = row.begin * tile - p.padding_w;
      if (y < 0 || y >= height) continue;
      const float* plane = image_channel + row.n * image_stride;
      const int64_t length = tile * (row.end - row.begin + 1);
      const int64_t x_begin = std::max<int64_t>(0, -left), x_end = std::min(length, width - left);
      float* out = padded + k * span + r * tile * segment;
      if (x_end > x_begin) std::memcpy(out + x_begin, plane + y * width + left + x_begin, (x_end - x_begin) * 4);
    }
  }
  input_transform_6(span, padded, padded + span, padded + 2 * span, padded + 3 * span, padded + 4 * span,
                    padded + 5 * span, vertical, vertical + span, vertical + 2 * span, vertical + 3 * span,
                    vertical + 4 * span, vertical + 5 * span);
  for (int64_t i = 0; i < patch; ++i) {
    for (int64_t u = 0; u < phase_length; ++u) {
      for (int64_t q = 0; q < tile; ++q) phases[(i * tile + q) * phase_length + u] = vertical[i * span + tile * u + q];
    }
  }
  const int64_t computed = phase_length - 1;
  for (int64_t i = 0; i < patch; ++i) {
    // Patch columns 0-3 are phases 0-3 of tile u; columns 4 and 5 are phases 0 and 1 of tile u + 1.
    const float* q = phases + i * tile * phase_length;
    const float *q0 = q, *q1 = q + phase_length, *q2 = q + 2 * phase_length, *q3 = q + 3 * phase_length;
    float* out = transformed + i * patch * phase_length;
    input_transform_6(computed, q0, q1, q2, q3, q0 + 1, q1 + 1, out, out + phase_length, out + 2 * phase_length,
                      out + 3 * phase_length, out + 4 * phase_length, out + 5 * phase_length);
  }
  for (int64_t xi = 0; xi < points; ++xi) {
    for (int64_t r = 0; r < row_count; ++r) {
      std::memcpy(v + xi * xi_stride + rows[r].column, transformed + xi * phase_length + r * segment,
                  (rows[r].end - rows[r].begin) * sizeof(float));
    }
  }
}

// What follows the convolution inside conv2d_winograd_forward_cpu: a residual (or null), the ReLU,
// a 2x2 max pool of stride 2, and the convolution's own output's mean over channels (or null).
struct Epilogue {
  const float* residual;
  bool relu, pooled;
  float* channel_means;
};

// A^T m A for output channel co and the tiles of a group of tile rows (consecutive in m), plus
// bias and the epilogue, written into that channel of `output` (the pool's, with a pool) and
// added to the channel means' sums. m: (36, tiles) from the group's first tile, consecutive points
// xi_stride floats apart. A^T is applied down the 6x6 products first, then along their rows, each
// result landing in output column 4u + j of its tile row. out_h and out_w are the convolution's.
void output_transform_rows(const float* m, int64_t xi_stride, const TileRow* rows, int64_t row_count, float bias,
                           const Epilogue& epilogue, int64_t co, TensorView output, int64_t out_h, int64_t out_w,
                           float* scratch) {
  const int64_t count = rows[row_count - 1].column + rows[row_count - 1].end - rows[row_count - 1].begin -
                        rows[0].column;                // tiles in the group
  float* half_done = scratch;                          // (4, 6, count): A^T m
  float* out_rows = half_done + tile * patch * count;  // (4, 4 * count): A^T m A, interleaved
  for (int64_t j = 0; j < patch; ++j) {
    const float* mj = m + j * xi_stride;
    float* hj = half_done + j * count;
    const int64_t in = patch * xi_stride, out = patch * count;  // from one row of the 6x6 to the next
    output_transform_6(count, mj, mj + in, mj + 2 * in, mj + 3 * in, mj + 4 * in, mj + 5 * in, hj, hj + out,
                       hj + 2 * out, hj + 3 * out);
  }
  for (int64_t i = 0; i < tile; ++i) {
    const float* h = half_done + i * patch * count;
    output_transform_6_interleaved(count, h, h + count, h + 2 * count, h + 3 * count, h + 4 * count, h + 5 * count,
                                   bias, out_rows + i * tile * count);
  }
  // Each tile row to its place; the last tile row and column may hang over the output's edge.
  const float floor = epilogue.relu ? 0.0f : -std::numeric_limits<float>::infinity();
  const int64_t plane_size = output.dim(2) * output.dim(3), image_stride = output.dim(1) * plane_size;
  float* const means = epilogue.channel_means;
  for (int64_t r = 0; r < row_count; ++r) {
    const TileRow& row = rows[r];
    const int64_t y0 = row.th * tile, x0 = row.begin * tile, offset = tile * (row.column - rows[0].column);
    const int64_t columns = std::min(tile * (row.end - row.begin), out_w - x0);
    float* plane = output.data + row.n * image_stride + co * plane_size;
    if (means) {
      for (int64_t i = 0; i < tile && y0 + i < out_h; ++i) {
        const float* from = out_rows + i * tile * count + offset;
        float* sums = means + (row.n * out_h + y0 + i) * out_w + x0;
        for (int64_t x = 0; x < columns; ++x) sums[x] += std::max(from[x], floor);
      }
    }
    if (epilogue.pooled) {
      // A tile's 4x4 results pool into 2x2: tiles start at even rows and columns, so no window
      // reaches into the next tile. The ReLU after the maximum: the same, on a quarter of the values.
      const int64_t pool_w = out_w / 2, pool_x0 = x0 / 2;
      const int64_t pool_columns = std::min(tile / 2 * (row.end - row.begin), pool_w - pool_x0);
      for (int64_t i = 0; i < tile / 2 && y0 / 2 + i < out_h / 2; ++i) {
        const float* top = out_rows + 2 * i * tile * count + offset;
        const float* bottom = top + tile * count;
        float* pooled_row = plane + (y0 / 2 + i) * pool_w + pool_x0;
        for (int64_t x = 0; x < pool_columns; ++x) {
          const float window = nan_max(nan_max(top[2 * x], top[2 * x + 1]), nan_max(bottom[2 * x], bottom[2 * x + 1]));
          pooled_row[x] = std::max(window, floor);
        }
      }
      continue;
    }
    const float* residual_plane =
        epilogue.residual ? epilogue.residual + row.n * image_stride + co * plane_size : nullptr;
    for (int64_t i = 0; i < tile && y0 + i < out_h; ++i) {
      const int64_t at = (y0 + i) * out_w + x0;
      finish_row(columns, out_rows + i * tile * count + offset, residual_plane ? residual_plane + at : nullptr, floor,
                 plane + at);
    }
  }
}

// The work of one chunk's three stages, for the threads that share it: each stage's items in
// runs, one a thread, taken from the front by their own thread and from the back by a thread done
// with its own (TaskRuns). The products' items are (share of the output channels, point), a share
// for each thread.
struct SharedChunkRuns {
  SharedChunkRuns(const Conv2dParams& p, int64_t groups, int threads)
      : shares(threads),
        input(p.in_channels * groups, threads),
        products(shares * points, threads),
        output(p.out_channels * groups, threads) {}
  int64_t shares;
  TaskRuns input, products, output;
};

// f(row, columns) for each row of the convolution's output that the tile rows cover, in `plane`
// (N, out_h, out_w): the part of each that they cover.
template <typename F>
void for_each_output_row(const TileGeometry& g, const std::vector<TileRow>& rows, float* plane, F f) {
  for (const TileRow& row : rows) {
    const int64_t y0 = row.th * tile, x0 = row.begin * tile;
    const int64_t columns = std::min(tile * (row.end - row.begin), g.out_w - x0);
    for (int64_t i = 0; i < tile && y0 + i < g.out_h; ++i)
      f(plane + (row.n * g.out_h + y0 + i) * g.out_w + x0, columns);
  }
}

// One chunk of tiles [first, first + count) through all three stages. With `shared`, every
// thread of the enclosing parallel region calls this for the same chunk and takes items of each
// stage from `shared` (the GEMMs split by output channels, so no thread waits inside them), with
// a barrier between stages; otherwise the calling thread does it all, and it alone may sum the
// chunk's channels for their mean.
void run_chunk(const Conv2dParams& p, ConstTensorView input, const std::vector<PackedMatrix>& u, const float* bias,
               const Epilogue& epilogue, TensorView output, const TileGeometry& g, int64_t first, int64_t count,
               float* workspace, SharedChunkRuns* shared) {
  const int64_t height = input.dim(2), width = input.dim(3), out_h = g.out_h, out_w = g.out_w;
  const int thread = shared ? omp_get_thread_num() : 0;
  float* v = workspace;                           // (36, C_in, count)
  float* m = v + points * p.in_channels * count;  // (36, C_out, count)
  float* gemm_workspace = m + points * p.out_channels * count + thread * gemm_workspace_floats(p.in_channels, count);
  const std::vector<TileRow> rows = tile_rows(g, first, count);
  const int64_t row_count = static_cast<int64_t>(rows.size());
  const int64_t group_rows = rows_per_group(g.tiles_w), groups = row_groups(row_count, g.tiles_w);
  auto group_size = [&](int64_t group) { return std::min(group_rows, row_count - group * group_rows); };
  std::vector<float> scratch(group_scratch_floats(g.tiles_w));
  // Each of `items` things to do, from the stage's runs when shared, else all of them in order.
  auto for_each_item = [&](TaskRuns* runs, int64_t items, auto&& body) {
    if (!runs) {
      for (int64_t item = 0; item < items; ++item) body(item);
      return;
    }
    for (int64_t item = runs->next(thread); item >= 0; item = runs->next(thread)) body(item);
  };

  // 1. Input transform: V[xi][ci][t] = (B^T d B)[xi] for every channel and tile. Each item first
  // asks for the next one's lines of V with intent to write: they were last read by the products
  // (every thread's, where the threads share a chunk), and a store would wait for them. This and
  // the output's below together, ResNet-50 at batch 1, three runs of 150 alternating passes:
  // layer1's 3x3s 0.96-1.01 -> 0.91-0.97 ms a pass (the later two) and 0.57-0.60 -> 0.52-0.54 (the
  // first), layer2's later three 1.78-1.79 -> 1.70-1.72.
  auto prefetch_for_writing = [&](int64_t item) {
    const int64_t group = item % groups;
    const TileRow &first_row = rows[group * group_rows], &last_row = rows[group * group_rows + group_size(group) - 1];
    const float* channel = v + item / groups * count;
    for (int64_t xi = 0; xi < points; ++xi) {
      for (int64_t c = first_row.column; c < last_row.column + last_row.end - last_row.begin;
           c += floats_per_cache_line) {
        prefetch_for_write(channel + xi * p.in_channels * count + c);
      }
    }
  };
  for_each_item(shared ? &shared->input : nullptr, p.in_channels * groups, [&](int64_t item) {
    const int64_t ci = item / groups, group = item % groups;
    if (item + 1 < p.in_channels * groups) prefetch_for_writing(item + 1);
    input_transform_rows(p, input.data + ci * height * width, p.in_channels * height * width, height, width,
                         rows.data() + group * group_rows, group_size(group), g.tiles_w, v + ci * count,
                         p.in_channels * count, scratch.data());
  });
  if (shared) {
#pragma omp barrier
  }

  // 2. The 36 matrix products, M[xi] (C_out, count) = U[xi] (C_out, C_in) * V[xi] (C_in, count),
  // each item a share of the output channels in whole panels for one point.
  const int64_t panels_total = (p.out_channels + gemm_rows_per_panel - 1) / gemm_rows_per_panel;
  const int64_t shares = shared ? shared->shares : 1;
  for_each_item(shared ? &shared->products : nullptr, shares * points, [&](int64_t item) {
    const int64_t share = item / points, xi = item % points;
    const int64_t row_first = panels_total * share / shares * gemm_rows_per_panel,
                  row_last = std::min(p.out_channels, panels_total * (share + 1) / shares * gemm_rows_per_panel);
    if (row_first >= row_last) return;
    gemm_packed(u[xi], v + xi * p.in_channels * count, count, count, m + xi * p.out_channels * count, count, {},
                gemm_workspace, 1, row_first, row_last);
  });
  if (shared) {
#pragma omp barrier
  }

  // 3. Output transform: Y = A^T M A, plus bias, residual and ReLU (and the pool), into the output
  // image; the means summed channel by channel and divided once.
  float* means = epilogue.channel_means;
  if (means) for_each_output_row(g, rows, means, [](float* row, int64_t n) { std::fill(row, row + n, 0.0f); });
  // Each item first asks for the next one's lines of the output with intent to write, as the
  // input transform does for V (measured with it, above).
  const bool pooled = epilogue.pooled;
  const int64_t written_h = pooled ? out_h / 2 : out_h, written_w = pooled ? out_w / 2 : out_w;
  const int64_t written_tile = pooled ? tile / 2 : tile;
  auto prefetch_output_for_writing = [&](int64_t item) {
    const int64_t group = item % groups;
    for (int64_t r = group * group_rows; r < group * group_rows + group_size(group); ++r) {
      const TileRow& row = rows[r];
      const int64_t y0 = row.th * written_tile, x0 = row.begin * written_tile;
      const int64_t x_end = std::min(x0 + written_tile * (row.end - row.begin), written_w);
      const float* plane = output.data + (row.n * output.dim(1) + item / groups) * written_h * written_w;
      for (int64_t y = y0; y < std::min(y0 + written_tile, written_h); ++y) {
        for (int64_t x = x0 / floats_per_cache_line * floats_per_cache_line; x < x_end; x += floats_per_cache_line) {
          prefetch_for_write(plane + y * written_w + x);
        }
      }
    }
  };
  for_each_item(shared ? &shared->output : nullptr, p.out_channels * groups, [&](int64_t item) {
    const int64_t co = item / groups, group = item % groups;
    const TileRow* group_first = rows.data() + group * group_rows;
    if (item + 1 < p.out_channels * groups) prefetch_output_for_writing(item + 1);
    output_transform_rows(m + co * count + group_first->column, p.out_channels * count, group_first, group_size(group),
                          bias ? bias[co] : 0.0f, epilogue, co, output, out_h, out_w, scratch.data());
  });
  if (means) {
    const float scale = 1.0f / static_cast<float>(p.out_channels);
    for_each_output_row(g, rows, means, [&](float* row, int64_t n) {
      for (int64_t x = 0; x < n; ++x) row[x] *= scale;
    });
  }
}

}  // namespace

bool conv2d_winograd_applies(const Conv2dParams& p, const Shape& input_shape) {
  const bool three_by_three = p.kernel_h == 3 && p.kernel_w == 3 && p.stride_h == 1 && p.stride_w == 1 &&
                              p.dilation_h == 1 && p.dilation_w == 1 && p.groups == 1;
  if (!three_by_three || p.in_channels < 16 || p.out_channels < 16) return false;
  return conv2d_winograd_tiles(p, input_shape) >= smallest_tiles;
}

int64_t conv2d_winograd_tiles(const Conv2dParams& p, const Shape& input_shape) {
  const Shape out = conv2d_output_shape(p, input_shape);
  return tile_geometry(out[0], out[2], out[3]).tiles;
}

std::vector<PackedMatrix> conv2d_winograd_pack_weights(const Conv2dParams& p, const float* weight) {
  // U[xi] (C_out, C_in) = (G g G^T)[xi] for every (co, ci), computed in double and written
  // straight into the 36 packed matrices.
  static constexpr double transform[patch][3] = {{1.0 / 4, 0, 0},
                                                 {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                                 {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                                 {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                                 {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                                 {0, 0, 1}};
  std::vector<PackedMatrix> packed;
  for (int64_t xi = 0; xi < points; ++xi) packed.push_back(gemm_packed_matrix(p.out_channels, p.in_channels));
#pragma omp parallel for schedule(static)
  for (int64_t co = 0; co < p.out_channels; ++co) {
    for (int64_t ci = 0; ci < p.in_channels; ++ci) {
      double u[patch][patch];
      winograd_filter_transform(transform, weight + (co * p.in_channels + ci) * 9, u);
      const int64_t at = gemm_packed_index(packed[0], co, ci);  // the same place in all 36
      for (int64_t i = 0; i < patch; ++i) {
        for (int64_t j = 0; j < patch; ++j) packed[i * patch + j].data.data()[at] = static_cast<float>(u[i][j]);
      }
    }
  }
  return packed;
}

int64_t conv2d_winograd_workspace_floats(const Conv2dParams& p, const Shape& input_shape, int num_threads) {
  const Shape out = conv2d_output_shape(p, input_shape);
  const int64_t tiles = tile_geometry(out[0], out[2], out[3]).tiles;
  return num_threads * chunk_workspace_floats(p, std::min(tiles, tiles_per_chunk(p)));
}

bool conv2d_winograd_fuses_max_pool(const MaxPool2dParams& pool) {
  return pool.kernel_h == 2 && pool.kernel_w == 2 && pool.stride_h == 2 && pool.stride_w == 2 && pool.padding_h == 0 &&
         pool.padding_w == 0 && pool.dilation_h == 1 && pool.dilation_w == 1 && !pool.ceil_mode;
}

bool conv2d_winograd_writes_channel_means(const Conv2dParams& p, const Shape& input_shape, int num_threads) {
  const int64_t tiles = conv2d_winograd_tiles(p, input_shape), chunk = chunk_tiles(p, tiles, num_threads);
  return (tiles + chunk - 1) / chunk >= num_threads;
}

void conv2d_winograd_forward_cpu(const Conv2dParams& p, ConstTensorView input, const std::vector<PackedMatrix>& u,
                                 const float* bias, const float* residual, bool relu, TensorView output,
                                 float* workspace, int num_threads, const MaxPool2dParams* pool, float* channel_means) {
  if (pool && (residual || !conv2d_winograd_fuses_max_pool(*pool))) {
    throw Error("conv2d: Winograd fuses only a 2x2 max pool of stride 2, and no residual with it");
  }
  if (channel_means && !pool) throw Error("conv2d: Winograd writes channel means only with a fused max pool");
  const Shape conv = conv2d_output_shape(p, input.shape);
  const TileGeometry g = tile_geometry(input.dim(0), conv[2], conv[3]);
  const Epilogue epilogue{residual, relu, pool != nullptr, channel_means};
  const int64_t chunk = chunk_tiles(p, g.tiles, num_threads);
  const int64_t chunks = (g.tiles + chunk - 1) / chunk;
  const int64_t per_thread = chunk_workspace_floats(p, chunk);
  if (channel_means && chunks < num_threads) {
    throw Error("conv2d: Winograd writes channel means only where each thread has chunks of its own");
  }
  if (chunks >= num_threads) {
    // Every thread a chunk of its own, start to finish: no barriers between the three stages. Each
    // thread a run of consecutive chunks, then the others' last ones if it is done first (TaskRuns):
    // so thread 0 takes the top of the image, as it did in the layer before, whose output is still
    // in its cache; handed out in turn (schedule(dynamic)), either thread might. ResNet-50, 150
    // passes of each way alternating in one process: layer1's two later 3x3s together at batch 1
    // 1.17 -> 1.03 ms, at batch 8 10.5 -> 10.3, layer2's three 11.6 -> 11.2, layer3's five 22.9 ->
    // 22.4.
    TaskRuns chunk_runs(chunks, num_threads);
#pragma omp parallel num_threads(num_threads)
    {
      const int thread = omp_get_thread_num();
      for (int64_t c = chunk_runs.next(thread); c >= 0; c = chunk_runs.next(thread)) {
        const int64_t first = c * chunk;
        run_chunk(p, input, u, bias, epilogue, output, g, first, std::min(chunk, g.tiles - first),
                  workspace + thread * per_thread, nullptr);
      }
    }
  } else {
    // Fewer chunks than threads (small images, batch 1): the threads share each chunk.
    std::vector<SharedChunkRuns> runs;
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t first = c * chunk;
      const int64_t row_count = static_cast<int64_t>(tile_rows(g, first, std::min(chunk, g.tiles - first)).size());
      runs.emplace_back(p, row_groups(row_count, g.tiles_w), num_threads);
    }
#pragma omp parallel num_threads(num_threads)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t first = c * chunk;
      run_chunk(p, input, u, bias, epilogue, output, g, first, std::min(chunk, g.tiles - first), workspace, &runs[c]);
    }
  }
}

}  // namespace prism
