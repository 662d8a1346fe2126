// layers/cpu/conv2d.cpp: fast CPU convolution: im2col on a tile of output rows, then one packed
// GEMM per (image, group, tile) with bias and ReLU applied in its epilogue, while the tile is still
// in registers. A 1x1 stride-1 convolution skips im2col entirely; 3x3 stride-1 ones go to
// Winograd (conv2d_winograd.cpp) when the plan chose it. Leaves out direct kernels.
#include <omp.h>

#include <algorithm>
#include <cstring>

#include "layers/conv2d.hpp"

namespace prism {
namespace {

constexpr int64_t column_tile_budget_floats = int64_t{1} << 19;  // 2 MiB: about an L2 cache

bool is_pointwise(const Conv2dParams& p) {
  return p.kernel_h == 1 && p.kernel_w == 1 && p.stride_h == 1 && p.stride_w == 1 && p.padding_h == 0 &&
         p.padding_w == 0;
}

// Output rows per tile: the column tile stays within the cache budget, and when the batch is
// too small to give every thread an (image, group) of its own, images are cut into at least as
// many tiles as there are threads, so batch 1 runs on every core too. Tiles under 256 pixels
// (ResNet's 7x7 stage) make GEMMs too thin; those stay whole and the GEMM splits itself instead.
int64_t rows_per_tile(const Conv2dParams& p, int64_t batch, int64_t out_h, int64_t out_w, int num_threads) {
  constexpr int64_t smallest_split_tile_pixels = 256;
  const int64_t k = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  int64_t rows = std::clamp<int64_t>(column_tile_budget_floats / std::max<int64_t>(1, k * out_w), 1, out_h);
  const int64_t split_rows = (out_h + num_threads - 1) / num_threads;
  if (batch * p.groups < num_threads && split_rows * out_w >= smallest_split_tile_pixels)
    rows = std::min(rows, split_rows);
  return rows;
}

// Fills columns (K, rows * out_w) for output rows [row_begin, row_end) of one image and group:
// row (ic, ky, kx) of the matrix holds the input pixel each output pixel sees through that tap.
void im2col_tile(const Conv2dParams& p, const float* image, int64_t height, int64_t width, int64_t out_w,
                 int64_t row_begin, int64_t row_end, float* columns) {
  const int64_t in_per_group = p.in_channels / p.groups;
  const int64_t tile_pixels = (row_end - row_begin) * out_w;
  for (int64_t ic = 0; ic < in_per_group; ++ic) {
    const float* plane = image + ic * height * width;
    for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
      for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
        float* row = columns + ((ic * p.kernel_h + ky) * p.kernel_w + kx) * tile_pixels;
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
          } else {
            for (int64_t ox = ox_first; ox <= ox_last; ++ox) row[ox] = source[ox * p.stride_w];
          }
          std::fill(row + ox_last + 1, row + out_w, 0.0f);
        }
      }
    }
  }
}

// Floats of scratch one task needs: its column tile (K, tile pixels) and the GEMM's packed B.
int64_t task_workspace_floats(const Conv2dParams& p, int64_t tile_pixels) {
  const int64_t k = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  return (is_pointwise(p) ? 0 : k * tile_pixels) + gemm_workspace_floats(k, tile_pixels);
}

}  // namespace

Conv2dPreparedCpu conv2d_prepare_cpu(const Conv2dParams& p, ConstTensorView weight, const Shape& input_shape,
                                     bool allow_winograd) {
  if (allow_winograd && conv2d_winograd_applies(p, input_shape)) {
    return {true, conv2d_winograd_pack_weights(p, weight.data)};
  }
  // weight (C_out, C_in / groups * kh * kw) row-major: one matrix of C_out / groups rows per group.
  const int64_t out_per_group = p.out_channels / p.groups;
  const int64_t k = p.in_channels / p.groups * p.kernel_h * p.kernel_w;
  Conv2dPreparedCpu prepared;
  for (int64_t group = 0; group < p.groups; ++group) {
    prepared.matrices.push_back(gemm_pack_a(weight.data + group * out_per_group * k, out_per_group, k, k));
  }
  return prepared;
}

int64_t conv2d_workspace_floats_cpu(const Conv2dParams& p, const Conv2dPreparedCpu& prepared, const Shape& input_shape,
                                    int num_threads) {
  if (prepared.winograd) return conv2d_winograd_workspace_floats(p, input_shape, num_threads);
  const Shape out = conv2d_output_shape(p, input_shape);
  return int64_t{num_threads} *
         task_workspace_floats(p, rows_per_tile(p, input_shape[0], out[2], out[3], num_threads) * out[3]);
}

void conv2d_forward_cpu(const Conv2dParams& p, ConstTensorView input, const Conv2dPreparedCpu& prepared,
                        const float* bias, bool relu, TensorView output, float* workspace, int num_threads) {
  if (prepared.winograd) {
    conv2d_winograd_forward_cpu(p, input, prepared.matrices, bias, relu, output, workspace, num_threads);
    return;
  }
  const int64_t batch = input.dim(0), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3), out_pixels = out_h * out_w;
  const int64_t in_per_group = p.in_channels / p.groups;
  const int64_t out_per_group = p.out_channels / p.groups;
  const bool pointwise = is_pointwise(p);
  const int64_t tile_rows = rows_per_tile(p, batch, out_h, out_w, num_threads);
  const int64_t tiles = (out_h + tile_rows - 1) / tile_rows;
  const int64_t tasks = batch * p.groups * tiles;
  const int64_t per_task_floats = task_workspace_floats(p, tile_rows * out_w);

  // columns: this task's scratch, the column tile first and the GEMM's packed B after it.
  auto run_task = [&](int64_t task, float* scratch, int gemm_threads) {
    const int64_t n = task / (p.groups * tiles);
    const int64_t group = task / tiles % p.groups;
    const int64_t row_begin = task % tiles * tile_rows;
    const int64_t row_end = std::min(out_h, row_begin + tile_rows);
    const int64_t pixels = (row_end - row_begin) * out_w;
    const float* image = input.data + (n * p.in_channels + group * in_per_group) * height * width;

    // Pointwise: the input planes already are the column matrix; the tile starts at its first pixel.
    const float* cols = image + row_begin * out_w;
    int64_t cols_stride = height * width;
    float* gemm_scratch = scratch;
    if (!pointwise) {
      im2col_tile(p, image, height, width, out_w, row_begin, row_end, scratch);
      cols = scratch;
      cols_stride = pixels;
      gemm_scratch = scratch + prepared.matrices[group].depth * pixels;
    }
    float* out = output.data + (n * p.out_channels + group * out_per_group) * out_pixels + row_begin * out_w;
    gemm_packed(prepared.matrices[group], cols, cols_stride, pixels, out, out_pixels,
                bias ? bias + group * out_per_group : nullptr, relu, gemm_scratch, gemm_threads);
  };

  if (tasks >= num_threads) {
    // Enough independent tiles: one per thread at a time, each GEMM single-threaded.
#pragma omp parallel for schedule(dynamic) num_threads(num_threads)
    for (int64_t task = 0; task < tasks; ++task) run_task(task, workspace + omp_get_thread_num() * per_task_floats, 1);
  } else {
    // Few large tiles (small images, batch 1): the GEMM spreads itself over the threads.
    for (int64_t task = 0; task < tasks; ++task) run_task(task, workspace, num_threads);
  }
}

}  // namespace prism
