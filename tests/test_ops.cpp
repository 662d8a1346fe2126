// tests/test_ops.cpp: every op's fast CPU version against its plain-loop reference on awkward
// shapes (odd sizes, 13 and 127 channels, groups, dilation, padding, ceil_mode), and a few
// hand-computed cases a reader can follow with pencil and paper.
#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>

#include "layers/adaptive_avg_pool2d.hpp"
#include "layers/add.hpp"
#include "layers/batch_norm2d.hpp"
#include "layers/conv2d.hpp"
#include "layers/cpu/direct_kernel.hpp"
#include "layers/cpu/gemm.hpp"
#include "layers/cpu/task_runs.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/relu.hpp"
#include "tests/helpers.hpp"

using namespace prism;

namespace {

constexpr double fast_tolerance = 1e-5;  // fp32 sums in another order than the double reference
// Winograd F(4x4, 3x3) multiplies inputs by up to 5 and weights' transforms by 1/24 before summing:
// its fp32 error is a few times the direct convolution's (measured: about 2e-6 of the scale).
constexpr double winograd_tolerance = 2e-5;

// How a test passes the residual: none, its own tensor, or the output itself (the plan's in-place add).
enum class Residual { none, separate, in_place };
const char* const residual_names[] = {"", " residual", " in place"};

Tensor run_conv_cpu(const Conv2dParams& p, const Tensor& x, const Tensor& w, const float* bias, bool relu, int threads,
                    Conv2dAlgorithm algorithm = Conv2dAlgorithm::im2col_gemm, const Tensor* residual = nullptr,
                    Residual mode = Residual::none, GemmPrecision precision = GemmPrecision::fp32) {
  Tensor out = mode == Residual::in_place ? residual->clone() : Tensor(conv2d_output_shape(p, x.shape()));
  const float* add = mode == Residual::none ? nullptr : mode == Residual::in_place ? out.data() : residual->data();
  const Conv2dPreparedCpu prepared = conv2d_prepare_cpu(p, w.view(), x.shape(), algorithm, precision);
  Tensor workspace({std::max<int64_t>(1, conv2d_workspace_floats_cpu(p, prepared, x.shape(), threads))});
  conv2d_forward_cpu(p, x.view(), prepared, bias, add, relu, out.view(), workspace.data(), threads);
  return out;
}

// A convolution with the same kernel, stride and padding along both axes.
Conv2dParams square_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding) {
  Conv2dParams p;
  p.in_channels = in;
  p.out_channels = out;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride;
  p.padding_h = p.padding_w = padding;
  return p;
}

// A max pool with the same kernel, stride, padding and dilation along both axes.
MaxPool2dParams square_pool(int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, bool ceil_mode) {
  MaxPool2dParams p;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride;
  p.padding_h = p.padding_w = padding;
  p.dilation_h = p.dilation_w = dilation;
  p.ceil_mode = ceil_mode;
  return p;
}

Tensor run_conv_ref(const Conv2dParams& p, const Tensor& x, const Tensor& w, const float* bias, bool relu) {
  Tensor out(conv2d_output_shape(p, x.shape()));
  conv2d_forward_ref(p, x.view(), w.view(), bias, relu, out.view());
  return out;
}

// x rounded to the nearest bfloat16, ties to even (the top 16 bits of its float; finite x only).
float round_to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&x, &bits, sizeof(x));
  return x;
}

Tensor rounded_to_bf16(const Tensor& t) {
  Tensor rounded = t.clone();
  for (int64_t i = 0; i < rounded.numel(); ++i) rounded.data()[i] = round_to_bf16(rounded.data()[i]);
  return rounded;
}

// c = a (rows, depth) * b (depth, columns) + bias, + addend, ReLU, in double, from a and b as
// given or each element first rounded to bf16.
Tensor product_in_double(const Tensor& a, const Tensor& b, const Tensor& bias, const Tensor& addend, bool bf16) {
  const int64_t rows = a.dim(0), depth = a.dim(1), columns = b.dim(1);
  auto value = [bf16](float x) { return static_cast<double>(bf16 ? round_to_bf16(x) : x); };
  Tensor c({rows, columns});
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < columns; ++j) {
      double sum = bias.data()[i] + addend.data()[i * columns + j];
      for (int64_t k = 0; k < depth; ++k) sum += value(a.data()[i * depth + k]) * value(b.data()[k * columns + j]);
      c.data()[i * columns + j] = static_cast<float>(std::max(sum, 0.0));
    }
  }
  return c;
}

}  // namespace

TEST_CASE("gemm: fp32 and bf16 products equal the product in double", "[ops][gemm]") {
  // 13 rows (a partial panel of 8 with AVX-512, of 6 with AVX2), depth 515 (blocks of 256, 256 and
  // an odd 3), 101 columns (with AVX-512 two panels of 48 and one of 5), with bias, addend and ReLU;
  // the rows from the second panel on alone as a thread's share (a share starts at a panel). Then a
  // shallow product taller than deep (21 x 19), which one thread runs row panel by row panel.
  for (const auto& [rows, depth, columns] :
       {std::array<int64_t, 3>{13, 515, 101}, std::array<int64_t, 3>{21, 19, 101}}) {
    const Tensor a = test::random_tensor({rows, depth}, 1), b = test::random_tensor({depth, columns}, 2);
    const Tensor bias = test::random_tensor({rows}, 3), addend = test::random_tensor({rows, columns}, 4);
    const PackedMatrix fp32 = gemm_pack_a(a.data(), rows, depth, depth);
    std::vector<GemmPrecision> precisions = {GemmPrecision::fp32};
    if (gemm_bf16_available()) {
      precisions.push_back(GemmPrecision::bf16);
    } else {
      WARN("this build has no AVX512_BF16: bf16 products not tested");
      CHECK_THROWS_WITH(gemm_to_bf16(fp32), Catch::Contains("AVX512_BF16"));
    }
    for (GemmPrecision precision : precisions) {
      const bool bf16 = precision == GemmPrecision::bf16;
      const PackedMatrix packed = bf16 ? gemm_to_bf16(fp32) : gemm_pack_a(a.data(), rows, depth, depth);
      const Tensor expected = product_in_double(a, b, bias, addend, bf16);
      for (int threads : {1, 2}) {
        for (int64_t first_row : {int64_t{0}, gemm_rows_per_panel}) {
          Tensor c({rows, columns});
          std::vector<float> workspace(gemm_workspace_floats(depth, columns));
          gemm_packed(packed, b.data(), columns, columns, c.data(), columns,
                      GemmEpilogue{bias.data(), addend.data(), columns, true}, workspace.data(), threads, first_row);
          INFO((bf16 ? "bf16" : "fp32") << ", " << threads << " threads, rows from " << first_row);
          Tensor share = expected.clone();  // rows before first_row stay as they were: zero
          std::fill(share.data(), share.data() + first_row * columns, 0.0f);
          const test::Difference d = test::compare(c.view(), share.view());
          INFO(d.describe());
          CHECK(d.max_abs < 1e-5 * std::max(1.0, d.scale));  // fp32 sums of exact products
        }
      }
    }
    // The bf16 test can fail: rounding the inputs moves this product far more than fp32 sums do.
    const test::Difference rounding = test::compare(product_in_double(a, b, bias, addend, true).view(),
                                                    product_in_double(a, b, bias, addend, false).view());
    CHECK(rounding.max_abs > 1e-3 * rounding.scale);
  }
}

TEST_CASE("gemm: columns in runs (images side by side) equal the plain product", "[ops][gemm]") {
  // 101 columns in runs of 29 (three whole runs and 14 columns of a fourth): panels of 48 cross
  // from one run into the next. Each run's rows have their own padding and runs lie apart, as
  // images' planes do; the addend in place (in C itself) as ResNet's residuals are, and apart.
  // Deep, and shallow and taller than deep (run row panel by row panel on one thread).
  constexpr int64_t columns = 101, run = 29, runs_count = 4;
  for (const auto& [rows, depth] : {std::array<int64_t, 2>{13, 515}, std::array<int64_t, 2>{21, 19}}) {
    const Tensor a = test::random_tensor({rows, depth}, 1), b = test::random_tensor({depth, columns}, 2);
    const Tensor bias = test::random_tensor({rows}, 3), addend = test::random_tensor({rows, columns}, 4);
    const GemmColumnRuns runs{run, depth * 31 + 5, rows * 33 + 3, rows * 30 + 1};
    // Element (row, column) of a matrix in runs with the given row stride and run stride.
    auto at = [run](int64_t row, int64_t column, int64_t row_stride, int64_t run_stride) {
      return column / run * run_stride + row * row_stride + column % run;
    };
    std::vector<float> b_runs(runs_count * runs.b_stride), addend_runs(runs_count * runs.addend_stride);
    for (int64_t j = 0; j < columns; ++j) {
      for (int64_t k = 0; k < depth; ++k) b_runs[at(k, j, 31, runs.b_stride)] = b.data()[k * columns + j];
      for (int64_t r = 0; r < rows; ++r) addend_runs[at(r, j, 30, runs.addend_stride)] = addend.data()[r * columns + j];
    }
    const PackedMatrix fp32 = gemm_pack_a(a.data(), rows, depth, depth);
    for (bool bf16 : {false, true}) {
      if (bf16 && !gemm_bf16_available()) continue;
      const PackedMatrix packed = bf16 ? gemm_to_bf16(fp32) : gemm_pack_a(a.data(), rows, depth, depth);
      const Tensor expected = product_in_double(a, b, bias, addend, bf16);
      for (int threads : {1, 2}) {
        for (bool in_place : {false, true}) {
          std::vector<float> c_runs(runs_count * runs.c_stride, 0.0f);
          GemmEpilogue epilogue{bias.data(), addend_runs.data(), 30, true};
          GemmColumnRuns layout = runs;
          if (in_place) {
            for (int64_t j = 0; j < columns; ++j) {
              for (int64_t r = 0; r < rows; ++r) c_runs[at(r, j, 33, runs.c_stride)] = addend.data()[r * columns + j];
            }
            epilogue.addend = c_runs.data(), epilogue.addend_row_stride = 33, layout.addend_stride = runs.c_stride;
          }
          std::vector<float> workspace(gemm_workspace_floats(depth, columns));
          gemm_packed(packed, b_runs.data(), 31, columns, c_runs.data(), 33, epilogue, workspace.data(), threads, 0, -1,
                      layout);
          Tensor c({rows, columns});
          for (int64_t j = 0; j < columns; ++j) {
            for (int64_t r = 0; r < rows; ++r) c.data()[r * columns + j] = c_runs[at(r, j, 33, runs.c_stride)];
          }
          INFO((bf16 ? "bf16" : "fp32") << ", " << threads << " threads, addend " << (in_place ? "in C" : "apart"));
          const test::Difference d = test::compare(c.view(), expected.view());
          INFO(d.describe());
          CHECK(d.max_abs < 1e-5 * std::max(1.0, d.scale));
        }
      }
    }
  }
}

TEST_CASE("gemm: a B too large for L2, read in place where its panels lie whole in one run", "[ops][gemm]") {
  // Depth 300 (blocks of 256 and 44) by 1100 columns in runs of 517 (a panel across the first two
  // runs, a partial last panel), rows 520 floats apart: on one thread the whole panels are read
  // where they lie and the others packed.
  constexpr int64_t rows = 13, depth = 300, columns = 1100, run = 517, row_stride = 520;
  const Tensor a = test::random_tensor({rows, depth}, 1), b = test::random_tensor({depth, columns}, 2);
  const Tensor bias = test::random_tensor({rows}, 3), zero({rows, columns});
  // B's runs lie apart; C's follow each other, so that C is a plain (rows, columns) matrix.
  const GemmColumnRuns runs{run, depth * row_stride + 7, run, 0};
  std::vector<float> b_runs(3 * runs.b_stride);
  for (int64_t k = 0; k < depth; ++k) {
    for (int64_t j = 0; j < columns; ++j) {
      b_runs[j / run * runs.b_stride + k * row_stride + j % run] = b.data()[k * columns + j];
    }
  }
  const PackedMatrix packed = gemm_pack_a(a.data(), rows, depth, depth);
  const Tensor expected = product_in_double(a, b, bias, zero, false);
  for (int threads : {1, 2}) {
    Tensor c({rows, columns});
    std::vector<float> workspace(gemm_workspace_floats(depth, columns));
    gemm_packed(packed, b_runs.data(), row_stride, columns, c.data(), columns,
                GemmEpilogue{bias.data(), nullptr, 0, true}, workspace.data(), threads, 0, -1, runs);
    INFO(threads << " threads");
    const test::Difference d = test::compare(c.view(), expected.view());
    INFO(d.describe());
    CHECK(d.max_abs < 1e-5 * std::max(1.0, d.scale));
  }
}

TEST_CASE("direct kernel: tiles of every size give the plain sums and write only their own pixels", "[ops][conv2d]") {
  // Taps into a small image: evenly spaced (as a 1x1's planes are), for which the kernels step from
  // the first two offsets, and not (as a window's are). 7 taps: the loop's two taps a pass leave one.
  const Tensor image = test::random_tensor({256}, 1);
  const std::vector<std::vector<int64_t>> offset_sets = {{0, 30, 60, 90, 120, 150, 180}, {0, 64, 3, 130, 67, 200, 1}};
  for (const std::vector<int64_t>& taps : offset_sets) {
    for (int64_t vectors : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}}) {
      const int64_t block = direct_vectors_for(vectors * simd_floats);  // as the convolutions clamp it
      const int64_t channels = block * simd_floats, full = direct_pixels_per_tile(block);
      const DirectKernels kernels(block, taps);
      const int64_t depth = static_cast<int64_t>(taps.size());
      const Tensor weights = test::random_tensor({depth * channels}, 2 + vectors);
      for (int64_t pixels = 1; pixels <= full; ++pixels) {
        std::vector<const float*> inputs(pixels);
        for (int64_t r = 0; r < pixels; ++r) inputs[r] = image.data() + 5 * r;
        for (bool accumulate : {false, true}) {
          std::vector<float> tile(full * channels, 0.5f);
          kernels(pixels)(inputs.data(), taps.data(), depth, weights.data(), tile.data(), accumulate, nullptr, 0,
                          false);
          for (int64_t r = 0; r < full; ++r) {
            for (int64_t c = 0; c < channels; ++c) {
              double expected = 0.5;  // past the tile's pixels, untouched
              if (r < pixels) {
                expected = accumulate ? 0.5 : 0.0;
                for (int64_t k = 0; k < depth; ++k) {
                  expected += double{inputs[r][taps[k]]} * weights.data()[k * channels + c];
                }
              }
              INFO("vectors " << block << " pixels " << pixels << " of " << full << " taps from " << taps[1]
                              << " accumulate " << accumulate << " at " << r << ", " << c);
              CHECK(tile[r * channels + c] == Approx(expected).margin(1e-5));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("direct kernel: a range's pixels shared out over its calls, none longer than a tile", "[ops][conv2d]") {
  for (int64_t per_tile : {int64_t{6}, int64_t{8}}) {
    for (int64_t pixels = 1; pixels <= 60; ++pixels) {
      const int64_t calls = (pixels + per_tile - 1) / per_tile;
      int64_t next = 0, shortest = per_tile, longest = 0;
      for (int64_t call = 0; call < calls; ++call) {
        const DirectTile tile = direct_tile(pixels, calls, call);
        CHECK(tile.first == next);  // in order, none left out or taken twice
        next = tile.first + tile.pixels;
        shortest = std::min(shortest, tile.pixels);
        longest = std::max(longest, tile.pixels);
      }
      INFO(pixels << " pixels in calls of at most " << per_tile);
      CHECK(next == pixels);
      CHECK(shortest >= 1);
      CHECK(longest <= per_tile);
      CHECK(longest - shortest <= 1);
    }
  }
  CHECK(direct_tile(49, 9, 0).pixels == 6);  // a 7x7 image: 4 calls of 6 pixels, then 5 of 5
  CHECK(direct_tile(49, 9, 4).first == 24);
  CHECK(direct_tile(49, 9, 8).pixels == 5);
}

TEST_CASE("conv2d: a 3x3 convolution computed by hand", "[ops][conv2d]") {
  // Input 1..16 in a 4x4 grid; a kernel that sums the 3x3 neighbourhood with the centre counted
  // twice; padding 1, so the corner (0, 0) sees 1 + 2 + 5 + 6 plus the centre again: 15.
  Conv2dParams p;
  p.in_channels = p.out_channels = 1;
  p.kernel_h = p.kernel_w = 3;
  p.padding_h = p.padding_w = 1;
  std::vector<float> pixels(16);
  for (int i = 0; i < 16; ++i) pixels[i] = static_cast<float>(i + 1);
  const Tensor x = Tensor::from_data({1, 1, 4, 4}, pixels.data());
  const std::vector<float> kernel = {1, 1, 1, 1, 2, 1, 1, 1, 1};
  const Tensor w = Tensor::from_data({1, 1, 3, 3}, kernel.data());
  const float bias = -10.0f;
  const std::vector<float> expected = {
      1 + 2 + 5 + 6 + 1 - 10.0f,          // corner: 4 pixels + centre again
      1 + 2 + 3 + 5 + 6 + 7 + 2 - 10.0f,  // top edge: 6 pixels + centre
      2 + 3 + 4 + 6 + 7 + 8 + 3 - 10.0f,
      3 + 4 + 7 + 8 + 4 - 10.0f,
      1 + 2 + 5 + 6 + 9 + 10 + 5 - 10.0f,
      1 + 2 + 3 + 5 + 6 + 7 + 9 + 10 + 11 + 6 - 10.0f,  // interior: all 9 + centre
  };
  for (bool fast : {false, true}) {
    const Tensor y = fast ? run_conv_cpu(p, x, w, &bias, false, 1) : run_conv_ref(p, x, w, &bias, false);
    REQUIRE(y.shape() == Shape{1, 1, 4, 4});
    for (size_t i = 0; i < expected.size(); ++i) CHECK(y.data()[i] == Approx(expected[i]));
  }
}

TEST_CASE("conv2d: fast CPU equals the reference on awkward shapes", "[ops][conv2d]") {
  struct Case {
    int64_t batch, in, out, height, width, kernel_h, kernel_w, stride, padding, dilation, groups;
    bool bias, relu;
    int64_t stride_w = 0;  // 0: the same as stride (which is then the height's)
  };
  const std::vector<Case> cases = {
      {1, 3, 13, 17, 19, 3, 3, 1, 1, 1, 1, true, false},   // RGB stem, odd sizes
      {2, 13, 127, 11, 9, 3, 3, 2, 1, 1, 1, false, true},  // strided, 127 channels
      {3, 16, 8, 10, 10, 1, 1, 1, 0, 1, 1, true, true},    // pointwise: no im2col
      {2, 5, 7, 6, 5, 1, 1, 2, 0, 1, 1, false, false},     // strided 1x1 (a downsample)
      {2, 12, 18, 9, 14, 3, 3, 1, 2, 2, 3, true, false},   // dilation and groups
      {1, 32, 32, 7, 7, 3, 3, 1, 1, 1, 32, false, true},   // depthwise
      {1, 8, 4, 15, 16, 7, 5, 3, 3, 1, 1, true, false},    // non-square kernel, stride 3
      {1, 4, 6, 5, 5, 3, 3, 1, 0, 1, 2, true, true},       // no padding, two groups
      {1, 70, 20, 40, 40, 3, 3, 1, 1, 1, 1, true, true},   // several row tiles per image
      {2, 3, 64, 31, 29, 7, 7, 2, 3, 1, 1, false, false},  // a ResNet stem on an odd image
      // Shapes Winograd takes (3x3, stride 1, at least 16 channels and 32 tiles of 4x4 outputs):
      {2, 17, 33, 23, 29, 3, 3, 1, 1, 1, 1, true, true},    // partial tiles on both edges
      {1, 64, 20, 30, 26, 3, 3, 1, 0, 1, 1, false, false},  // no padding: 28x24 outputs
      {3, 16, 50, 13, 11, 3, 3, 1, 1, 1, 1, true, false},   // several images per chunk
      {1, 300, 16, 56, 56, 3, 3, 1, 1, 1, 1, true, true},   // two depth blocks in the GEMM
      // Winograd's F(2x2, 3x3) takes every 3x3 stride-1 case without dilation or groups, these too:
      {1, 96, 80, 14, 14, 3, 3, 1, 1, 1, 1, true, true},  // a 14x14 stage at batch 1, 80 channels
      {1, 24, 40, 9, 10, 3, 3, 1, 2, 1, 1, true, false},  // padding 2: outputs larger than inputs
      // Shapes for the direct kernel (every case above runs it too): channel blocks of 1 to 4
      // vectors with a partial last block, several depth blocks, a partial last tile of pixels,
      // stride 2 with padding, images bigger than one padded chunk. The blocks named are
      // AVX-512's; with AVX2 they are of 1 or 2 vectors (8 or 16 channels) and 128 taps.
      {2, 40, 100, 7, 7, 3, 3, 1, 1, 1, 1, true, true},    // 100 channels: blocks of 64 and 36
      {1, 520, 48, 5, 6, 3, 3, 1, 1, 1, 1, false, false},  // depth 4680: 14 blocks of 341 taps
      {3, 24, 33, 9, 11, 3, 3, 2, 1, 1, 1, true, false},   // strided, 33 channels: 3 vectors
      {1, 6, 70, 13, 13, 5, 5, 1, 2, 2, 2, true, true},    // dilation 2, groups of 35 channels
      {2, 300, 32, 58, 58, 3, 3, 1, 1, 1, 1, true, true},  // padded images of over 4 MiB: a chunk each
      // Strided 1x1s (their pixels copied side by side first), results written a square of
      // vectors at a time where whole ones fit and one by one past them.
      {2, 24, 40, 15, 13, 1, 1, 2, 0, 1, 1, true, true},      // 8x7 outputs, 40 channels
      {1, 20, 70, 19, 17, 1, 1, 3, 0, 1, 2, false, true, 2},  // strides 3 and 2, groups of 35 channels
      {1, 64, 96, 33, 33, 1, 1, 1, 0, 1, 1, true, false},     // pointwise, 96 channels: blocks of 64 and 32
      // Small images several to a task, their pixels one run of tiles that crosses from image to
      // image, and a shorter last run (7 images: runs of 7, 4 + 3 or 3 + 3 + 1 for 1 to 3 threads).
      {7, 40, 70, 5, 5, 1, 1, 1, 0, 1, 1, true, true},   // 25 pixels an image: tiles of 6 cross them
      {5, 32, 48, 9, 9, 3, 3, 2, 1, 1, 2, false, true},  // strided 3x3 to 5x5, groups of 24 channels
      // An input larger than the weights: ranges of pixels outside blocks of channels in the tasks' order.
      {1, 8, 100, 40, 40, 3, 3, 2, 1, 1, 1, true, true},  // 20x20 outputs, blocks of 64 and 36
  };
  uint32_t seed = 100;
  for (const Case& c : cases) {
    Conv2dParams p;
    p.in_channels = c.in;
    p.out_channels = c.out;
    p.kernel_h = c.kernel_h;
    p.kernel_w = c.kernel_w;
    p.stride_h = c.stride;
    p.stride_w = c.stride_w > 0 ? c.stride_w : c.stride;
    p.padding_h = p.padding_w = c.padding;
    p.dilation_h = p.dilation_w = c.dilation;
    p.groups = c.groups;
    p.bias = c.bias;
    const Tensor x = test::random_tensor({c.batch, c.in, c.height, c.width}, ++seed);
    const Tensor w = test::random_tensor({c.out, c.in / c.groups, c.kernel_h, c.kernel_w}, ++seed);
    const Tensor b = test::random_tensor({c.out}, ++seed);
    const float* bias = c.bias ? b.data() : nullptr;
    // With a residual (a fused shortcut): the reference convolution, plus the residual, then ReLU.
    const Tensor residual = test::random_tensor(conv2d_output_shape(p, x.shape()), ++seed);
    const Tensor expected = run_conv_ref(p, x, w, bias, c.relu);
    Tensor expected_with_residual = run_conv_ref(p, x, w, bias, false);
    for (int64_t i = 0; i < residual.numel(); ++i) {
      const float sum = expected_with_residual.data()[i] + residual.data()[i];
      expected_with_residual.data()[i] = c.relu ? std::max(sum, 0.0f) : sum;
    }
    std::vector<Conv2dAlgorithm> algorithms = {Conv2dAlgorithm::im2col_gemm, Conv2dAlgorithm::direct};
    if (conv2d_winograd_applies(p, x.shape())) algorithms.push_back(Conv2dAlgorithm::winograd);
    if (conv2d_winograd_2x2_applies(p)) algorithms.push_back(Conv2dAlgorithm::winograd_2x2);
    for (Conv2dAlgorithm algorithm : algorithms) {
      for (Residual mode : {Residual::none, Residual::separate, Residual::in_place}) {
        for (int threads : {1, 2, 3}) {
          const Tensor actual = run_conv_cpu(p, x, w, bias, c.relu, threads, algorithm, &residual, mode);
          const test::Difference d =
              test::compare(actual.view(), mode == Residual::none ? expected.view() : expected_with_residual.view());
          INFO("case in " << c.in << " out " << c.out << " " << c.height << "x" << c.width << " kernel " << c.kernel_h
                          << "x" << c.kernel_w << " stride " << p.stride_h << "x" << p.stride_w << " groups "
                          << c.groups << " threads " << threads << " " << conv2d_algorithm_name(algorithm)
                          << residual_names[static_cast<int>(mode)] << ": " << d.describe());
          const bool winograd = algorithm == Conv2dAlgorithm::winograd || algorithm == Conv2dAlgorithm::winograd_2x2;
          CHECK(test::close_enough(d, winograd ? winograd_tolerance : fast_tolerance));
        }
      }
    }
    // bf16 (where this build has it): im2col's GEMM gives the reference convolution of the input
    // and weights rounded to bf16, to fp32's precision (the products are exact, the sums fp32).
    if (!gemm_bf16_available()) continue;
    const Tensor expected_rounded = run_conv_ref(p, rounded_to_bf16(x), rounded_to_bf16(w), bias, c.relu);
    for (int threads : {1, 2}) {
      const Tensor actual = run_conv_cpu(p, x, w, bias, c.relu, threads, Conv2dAlgorithm::im2col_gemm, nullptr,
                                         Residual::none, GemmPrecision::bf16);
      const test::Difference d = test::compare(actual.view(), expected_rounded.view());
      INFO("case in " << c.in << " out " << c.out << " " << c.height << "x" << c.width << " kernel " << c.kernel_h
                      << " threads " << threads << " im2col_gemm bf16: " << d.describe());
      CHECK(test::close_enough(d, fast_tolerance));
    }
  }
}

TEST_CASE("conv2d: a max pool fused into the direct convolution equals the two in turn", "[ops][conv2d]") {
  struct Case {
    int64_t batch, in, out, height, width, kernel, stride, padding;  // the convolution
    int64_t pool_kernel, pool_stride, pool_padding, pool_dilation;
    bool ceil, relu;
  };
  const std::vector<Case> cases = {
      {2, 3, 64, 45, 39, 7, 2, 3, 3, 2, 1, 1, false, true},    // ResNet's stem and pool, odd sizes
      {1, 3, 64, 224, 224, 7, 2, 3, 3, 2, 1, 1, false, true},  // the stem at 224: rows in many ranges
      {3, 20, 40, 14, 17, 3, 1, 1, 2, 2, 0, 1, true, false},   // 2x2 pool, ceil_mode, 40 channels
      {1, 16, 100, 13, 12, 3, 1, 1, 3, 1, 1, 2, false, true},  // stride 1, dilation 2, two blocks
  };
  uint32_t seed = 500;
  for (const Case& c : cases) {
    const Conv2dParams p = square_conv(c.in, c.out, c.kernel, c.stride, c.padding);
    const MaxPool2dParams pool = square_pool(c.pool_kernel, c.pool_stride, c.pool_padding, c.pool_dilation, c.ceil);
    const Tensor x = test::random_tensor({c.batch, c.in, c.height, c.width}, ++seed);
    const Tensor w = test::random_tensor({c.out, c.in, c.kernel, c.kernel}, ++seed);
    const Tensor b = test::random_tensor({c.out}, ++seed);
    const Tensor conv = run_conv_ref(p, x, w, b.data(), c.relu);
    Tensor expected(max_pool2d_output_shape(pool, conv.shape()));
    max_pool2d_forward_ref(pool, conv.view(), expected.view());
    Conv2dPreparedCpu prepared = conv2d_prepare_cpu(p, w.view(), x.shape(), Conv2dAlgorithm::direct);
    prepared.max_pool = pool;
    // The convolution's mean over channels, where the fused step can write it: all channels in
    // one block, up to 4 vectors with AVX-512 (64 channels, so not the 100 of the last case) and
    // 2 with 16 vector registers (16 channels with AVX2, 8 in a portable SSE build).
    const bool means = conv2d_direct_writes_channel_means(p, pool, x.shape());
    CHECK(means == (c.out <= direct_vectors_for(c.out) * simd_floats));
    const Tensor expected_means = channel_mean(conv.view());
    for (int threads : {1, 2, 3}) {
      Tensor actual(expected.shape()), actual_means(expected_means.shape());
      Tensor workspace({conv2d_workspace_floats_cpu(p, prepared, x.shape(), threads)});
      conv2d_forward_cpu(p, x.view(), prepared, b.data(), nullptr, c.relu, actual.view(), workspace.data(), threads,
                         means ? actual_means.data() : nullptr);
      const test::Difference d = test::compare(actual.view(), expected.view());
      INFO("case " << c.height << "x" << c.width << " kernel " << c.kernel << " pool " << c.pool_kernel << " stride "
                   << c.pool_stride << " threads " << threads << ": " << d.describe());
      CHECK(test::close_enough(d, fast_tolerance));
      if (means) CHECK(test::close_enough(test::compare(actual_means.view(), expected_means.view()), 1e-6));
    }
  }
  // A pool whose windows leave the last row unread (2x2, stride 2, on 13 rows): that row's mean
  // would be nobody's to write, so the fused step cannot give the means.
  Conv2dParams p;
  p.in_channels = 3, p.out_channels = 16, p.kernel_h = p.kernel_w = 3, p.padding_h = p.padding_w = 1;
  MaxPool2dParams pool;
  CHECK_FALSE(conv2d_direct_writes_channel_means(p, pool, {1, 3, 13, 12}));
  CHECK(conv2d_direct_writes_channel_means(p, pool, {1, 3, 12, 13}));
  pool.ceil_mode = true;
  CHECK(conv2d_direct_writes_channel_means(p, pool, {1, 3, 13, 12}));
}

TEST_CASE("conv2d: a 2x2 max pool fused into Winograd's output transform equals the two in turn", "[ops][conv2d]") {
  struct Case {
    int64_t batch, in, out, height, width;  // a 3x3 convolution with padding 1
    bool relu;
  };
  const std::vector<Case> cases = {
      {2, 16, 24, 19, 23, true},   // odd sizes: the last row and column of results have no window
      {1, 32, 40, 30, 30, false},  // 64 tiles: two or three threads share each chunk
      {3, 20, 16, 40, 36, true},   // 270 tiles: chunks of each thread's own
      {1, 64, 64, 56, 56, true},   // VGG's first pool at a quarter of the size, one image
  };
  uint32_t seed = 600;
  int with_means = 0;
  for (const Case& c : cases) {
    const Conv2dParams p = square_conv(c.in, c.out, 3, 1, 1);
    const MaxPool2dParams pool = square_pool(2, 2, 0, 1, false);
    const Tensor x = test::random_tensor({c.batch, c.in, c.height, c.width}, ++seed);
    const Tensor w = test::random_tensor({c.out, c.in, 3, 3}, ++seed);
    const Tensor b = test::random_tensor({c.out}, ++seed);
    REQUIRE(conv2d_winograd_applies(p, x.shape()));
    const Tensor conv = run_conv_ref(p, x, w, b.data(), c.relu);
    Tensor expected(max_pool2d_output_shape(pool, conv.shape()));
    max_pool2d_forward_ref(pool, conv.view(), expected.view());
    const Tensor expected_means = channel_mean(conv.view());
    Conv2dPreparedCpu prepared = conv2d_prepare_cpu(p, w.view(), x.shape(), Conv2dAlgorithm::winograd);
    prepared.max_pool = pool;
    for (int threads : {1, 2, 3}) {
      const bool means = conv2d_winograd_writes_channel_means(p, x.shape(), threads);
      with_means += means;
      Tensor actual(expected.shape()), actual_means(expected_means.shape());
      Tensor workspace({conv2d_workspace_floats_cpu(p, prepared, x.shape(), threads)});
      conv2d_forward_cpu(p, x.view(), prepared, b.data(), nullptr, c.relu, actual.view(), workspace.data(), threads,
                         means ? actual_means.data() : nullptr);
      const test::Difference d = test::compare(actual.view(), expected.view());
      INFO("case " << c.height << "x" << c.width << " threads " << threads << ": " << d.describe());
      CHECK(test::close_enough(d, winograd_tolerance));
      if (means)
        CHECK(test::close_enough(test::compare(actual_means.view(), expected_means.view()), winograd_tolerance));
      // Asked for means where the threads share chunks, it refuses rather than race.
      if (!means) {
        CHECK_THROWS_WITH(conv2d_forward_cpu(p, x.view(), prepared, b.data(), nullptr, c.relu, actual.view(),
                                             workspace.data(), threads, actual_means.data()),
                          Catch::Contains("chunks of its own"));
      }
    }
  }
  CHECK(with_means >= 6);  // the one-thread runs and the large cases
  // Only a 2x2 window of stride 2 maps each 4x4 tile onto whole windows.
  CHECK(conv2d_winograd_fuses_max_pool(square_pool(2, 2, 0, 1, false)));
  CHECK_FALSE(conv2d_winograd_fuses_max_pool(square_pool(3, 2, 1, 1, false)));
  CHECK_FALSE(conv2d_winograd_fuses_max_pool(square_pool(2, 2, 0, 1, true)));
  CHECK_FALSE(conv2d_winograd_fuses_max_pool(square_pool(2, 1, 0, 1, false)));
}

TEST_CASE("conv2d: the GEMM path's channel means are exactly channel_mean of its output", "[ops][conv2d]") {
  struct Case {
    int64_t batch, in, out, height, width, kernel, stride, padding;
    bool residual;
  };
  const std::vector<Case> cases = {
      {2, 16, 40, 20, 18, 1, 1, 0, true},   // pointwise, a residual written over
      {3, 8, 24, 9, 7, 1, 1, 0, false},     // several small images a task
      {1, 20, 33, 40, 37, 3, 3, 1, false},  // im2col, strided, row tiles of one image
      {2, 70, 20, 40, 40, 3, 1, 1, true},   // several row tiles per image
      {1, 16, 32, 7, 7, 1, 1, 0, false},    // one task: shared out by channels on several threads
      // Tasks of one image whose results exceed what the means are read back from L2 at once:
      // the product runs in parts of whole panels, the last one partial.
      {2, 8, 512, 48, 47, 1, 1, 0, true},
      {1, 6, 300, 60, 60, 3, 1, 1, false},
  };
  uint32_t seed = 700;
  int written = 0;
  for (const Case& c : cases) {
    const Conv2dParams p = square_conv(c.in, c.out, c.kernel, c.stride, c.padding);
    const Tensor x = test::random_tensor({c.batch, c.in, c.height, c.width}, ++seed);
    const Tensor w = test::random_tensor({c.out, c.in, c.kernel, c.kernel}, ++seed);
    const Tensor b = test::random_tensor({c.out}, ++seed);
    const Shape out_shape = conv2d_output_shape(p, x.shape());
    const Tensor residual = test::random_tensor(out_shape, ++seed);
    const Conv2dPreparedCpu prepared = conv2d_prepare_cpu(p, w.view(), x.shape(), Conv2dAlgorithm::im2col_gemm);
    for (int threads : {1, 2, 3}) {
      INFO("case " << c.batch << "x" << c.in << "x" << c.height << "x" << c.width << " -> " << c.out << ", threads "
                   << threads);
      Tensor output = c.residual ? residual.clone() : Tensor(out_shape);
      Tensor means({out_shape[0], 1, out_shape[2], out_shape[3]});
      Tensor workspace({conv2d_workspace_floats_cpu(p, prepared, x.shape(), threads)});
      if (!conv2d_gemm_writes_channel_means(p, x.shape(), threads)) {
        // Fewer tasks than threads: the threads share each task's channels, and no one sees a
        // pixel's all; asked anyway, the step refuses.
        CHECK_THROWS_WITH(conv2d_forward_cpu(p, x.view(), prepared, b.data(), nullptr, true, output.view(),
                                             workspace.data(), threads, means.data()),
                          Catch::Contains("channel means"));
        continue;
      }
      ++written;
      // The same output as without the means (the product in parts sums each element alike).
      Tensor alone = c.residual ? residual.clone() : Tensor(out_shape);
      conv2d_forward_cpu(p, x.view(), prepared, b.data(), c.residual ? alone.data() : nullptr, true, alone.view(),
                         workspace.data(), threads);
      conv2d_forward_cpu(p, x.view(), prepared, b.data(), c.residual ? output.data() : nullptr, true, output.view(),
                         workspace.data(), threads, means.data());
      CHECK(test::compare(output.view(), alone.view()).max_abs == 0.0);
      CHECK(test::compare(means.view(), channel_mean(output.view()).view()).max_abs == 0.0);
    }
  }
  CHECK(written >= 16);
  // Groups: a task holds one group's channels only.
  Conv2dParams grouped;
  grouped.in_channels = grouped.out_channels = 32;
  grouped.groups = 2;
  CHECK_FALSE(conv2d_gemm_writes_channel_means(grouped, {4, 32, 16, 16}, 2));
}

TEST_CASE("batch_norm2d: folding into the convolution equals running both", "[ops][batch_norm2d]") {
  Conv2dParams p;
  p.in_channels = 5;
  p.out_channels = 13;
  p.kernel_h = p.kernel_w = 3;
  p.padding_h = p.padding_w = 1;
  p.bias = false;
  const Tensor x = test::random_tensor({2, 5, 9, 7}, 1);
  Tensor w = test::random_tensor({13, 5, 3, 3}, 2);
  const Tensor gamma = test::random_tensor({13}, 3, 0.5f, 1.5f), beta = test::random_tensor({13}, 4);
  const Tensor mean = test::random_tensor({13}, 5), var = test::random_tensor({13}, 6, 0.1f, 3.0f);
  const BatchNorm2dWeights bn{gamma.data(), beta.data(), mean.data(), var.data()};
  BatchNorm2dParams bp;
  bp.channels = 13;

  const Tensor conv_out = run_conv_ref(p, x, w, nullptr, false);
  Tensor separate(conv_out.shape()), separate_fast(conv_out.shape());
  batch_norm2d_forward_ref(bp, bn, conv_out.view(), separate.view());
  batch_norm2d_forward_cpu(bp, bn, conv_out.view(), separate_fast.view());
  CHECK(test::close_enough(test::compare(separate_fast.view(), separate.view()), fast_tolerance));

  Tensor folded_bias({13});
  batch_norm2d_fold_into_conv(bp, bn, w.view(), folded_bias.data());
  const Tensor folded = run_conv_ref(p, x, w, folded_bias.data(), false);
  const test::Difference d = test::compare(folded.view(), separate.view());
  INFO(d.describe());
  CHECK(test::close_enough(d, fast_tolerance));

  // By hand: channel 0 of a zero input is just the shift bias - mean * weight / sqrt(var + eps).
  float scale[13], shift[13];
  batch_norm2d_scale_shift(bp, bn, scale, shift);
  CHECK(shift[0] == Approx(beta.data()[0] - mean.data()[0] * gamma.data()[0] / std::sqrt(var.data()[0] + 1e-5)));
}

TEST_CASE("max_pool2d: a 4x4 max-pool by hand", "[ops][max_pool2d]") {
  const std::vector<float> pixels = {1, 5,  2, 0,  //
                                     3, 4,  8, 1,  //
                                     0, -1, 6, 7,  //
                                     9, 2,  3, -4};
  const Tensor x = Tensor::from_data({1, 1, 4, 4}, pixels.data());
  MaxPool2dParams p;  // 2x2, stride 2
  for (bool fast : {false, true}) {
    Tensor y(max_pool2d_output_shape(p, x.shape()));
    fast ? max_pool2d_forward_cpu(p, x.view(), y.view()) : max_pool2d_forward_ref(p, x.view(), y.view());
    REQUIRE(y.shape() == Shape{1, 1, 2, 2});
    CHECK(std::vector<float>(y.data(), y.data() + 4) == std::vector<float>{5, 8, 9, 7});
  }
}

TEST_CASE("max_pool2d: output sizes follow PyTorch, ceil_mode included", "[ops][max_pool2d]") {
  auto size = [](int64_t in, int64_t k, int64_t s, int64_t pad, bool ceil) {
    MaxPool2dParams p;
    p.kernel_h = p.kernel_w = k;
    p.stride_h = p.stride_w = s;
    p.padding_h = p.padding_w = pad;
    p.ceil_mode = ceil;
    return max_pool2d_output_shape(p, {1, 1, in, in})[2];
  };
  CHECK(size(5, 2, 2, 0, false) == 2);
  CHECK(size(5, 2, 2, 0, true) == 3);      // the last window hangs over the edge
  CHECK(size(112, 3, 2, 1, false) == 56);  // ResNet's stem pool
  CHECK(size(5, 2, 3, 1, true) == 2);      // a window that would start in the right padding is dropped
  CHECK(size(7, 3, 2, 1, true) == 4);
}

TEST_CASE("max_pool2d: fast CPU equals the reference", "[ops][max_pool2d]") {
  struct Case {
    int64_t h, w, k, s, pad, dilation;
    bool ceil;
  };
  const std::vector<Case> cases = {{13, 11, 2, 2, 0, 1, false}, {13, 11, 2, 2, 0, 1, true},  {17, 9, 3, 2, 1, 1, false},
                                   {17, 9, 3, 2, 1, 1, true},   {10, 12, 3, 1, 1, 2, false}, {5, 5, 2, 3, 1, 1, true}};
  uint32_t seed = 7;
  for (const Case& c : cases) {
    const MaxPool2dParams p = square_pool(c.k, c.s, c.pad, c.dilation, c.ceil);
    const Tensor x = test::random_tensor({2, 13, c.h, c.w}, ++seed);
    Tensor expected(max_pool2d_output_shape(p, x.shape())), actual(expected.shape());
    max_pool2d_forward_ref(p, x.view(), expected.view());
    max_pool2d_forward_cpu(p, x.view(), actual.view());
    INFO("pool " << c.h << "x" << c.w << " kernel " << c.k << " stride " << c.s << " pad " << c.pad << " ceil "
                 << c.ceil);
    CHECK(test::compare(actual.view(), expected.view()).max_abs == 0.0);
  }
  // Rows and columns pooled differently (the fast one pools rows first, then columns), and NaN
  // spreading to every window that holds it, as in PyTorch.
  MaxPool2dParams p;
  p.kernel_h = 3, p.kernel_w = 2, p.stride_h = 2, p.stride_w = 1, p.padding_h = 1, p.padding_w = 1;
  Tensor x = test::random_tensor({1, 3, 9, 8}, 99);
  x.data()[1 * 72 + 4 * 8 + 5] = std::numeric_limits<float>::quiet_NaN();  // channel 1, row 4, column 5
  Tensor expected(max_pool2d_output_shape(p, x.shape())), actual(expected.shape());
  max_pool2d_forward_ref(p, x.view(), expected.view());
  max_pool2d_forward_cpu(p, x.view(), actual.view());
  int64_t nans = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const float a = actual.data()[i], e = expected.data()[i];
    CHECK((std::isnan(a) ? std::isnan(e) : a == e));
    nans += std::isnan(a);
  }
  CHECK(nans == 2);  // row 4 is in output row 2's window (rows 3-5) alone, column 5 in columns 5 and 6
}

TEST_CASE("adaptive_avg_pool2d: PyTorch's overlapping bins by hand", "[ops][adaptive_avg_pool2d]") {
  // 5 inputs into 3 bins: [0, 2), [1, 4), [3, 5): floor(i * 5 / 3) to ceil((i + 1) * 5 / 3).
  const std::vector<float> row = {1, 2, 3, 4, 5};
  const Tensor x = Tensor::from_data({1, 1, 1, 5}, row.data());
  AdaptiveAvgPool2dParams p{1, 3};
  for (bool fast : {false, true}) {
    Tensor y({1, 1, 1, 3});
    fast ? adaptive_avg_pool2d_forward_cpu(p, x.view(), y.view())
         : adaptive_avg_pool2d_forward_ref(p, x.view(), y.view());
    CHECK(y.data()[0] == Approx(1.5));
    CHECK(y.data()[1] == Approx(3.0));
    CHECK(y.data()[2] == Approx(4.5));
  }
}

TEST_CASE("adaptive_avg_pool2d: fast CPU equals the reference", "[ops][adaptive_avg_pool2d]") {
  const std::vector<std::array<int64_t, 4>> cases = {{13, 11, 7, 7}, {5, 3, 7, 7}, {7, 7, 7, 7},  {9, 14, 1, 1},
                                                     {10, 6, 4, 5},  {7, 7, 1, 1}, {40, 33, 3, 2}};
  uint32_t seed = 50;
  for (const auto& [h, w, oh, ow] : cases) {
    AdaptiveAvgPool2dParams p{oh, ow};
    const Tensor x = test::random_tensor({2, 13, h, w}, ++seed);
    Tensor expected(adaptive_avg_pool2d_output_shape(p, x.shape())), actual(expected.shape());
    adaptive_avg_pool2d_forward_ref(p, x.view(), expected.view());
    adaptive_avg_pool2d_forward_cpu(p, x.view(), actual.view());
    INFO(h << "x" << w << " -> " << oh << "x" << ow);
    CHECK(test::close_enough(test::compare(actual.view(), expected.view()), fast_tolerance));
  }
}

TEST_CASE("linear: by hand and fast CPU against the reference", "[ops][linear]") {
  // y = x W^T + b with x = (1, 2), W = ((1, 0), (2, -1), (0, 3)), b = (0.5, 0, -1).
  const std::vector<float> xs = {1, 2}, ws = {1, 0, 2, -1, 0, 3}, bs = {0.5f, 0, -1};
  LinearParams p{2, 3, true};
  const Tensor x = Tensor::from_data({1, 2}, xs.data()), w = Tensor::from_data({3, 2}, ws.data());
  for (bool fast : {false, true}) {
    Tensor y({1, 3});
    fast ? linear_forward_cpu(p, x.view(), w.view(), bs.data(), true, y.view())
         : linear_forward_ref(p, x.view(), w.view(), bs.data(), true, y.view());
    CHECK(y.data()[0] == Approx(1.5));
    CHECK(y.data()[1] == Approx(0.0));
    CHECK(y.data()[2] == Approx(5.0));
  }
  // Up to 32 images stream the weights 8 images at a time; more go to one GEMM. 127 inputs leave
  // a tail after whole vectors of 16; 160 do not.
  for (int64_t rows : {1, 3, 8, 9, 33}) {
    for (int64_t in : {127, 160}) {
      LinearParams q{in, 13, true};
      const Tensor xr = test::random_tensor({rows, in}, 1), wr = test::random_tensor({13, in}, 2);
      const Tensor br = test::random_tensor({13}, 3);
      Tensor expected({rows, 13}), actual({rows, 13});
      linear_forward_ref(q, xr.view(), wr.view(), br.data(), false, expected.view());
      linear_forward_cpu(q, xr.view(), wr.view(), br.data(), false, actual.view());
      INFO(rows << " images, " << in << " inputs");
      CHECK(test::close_enough(test::compare(actual.view(), expected.view()), fast_tolerance));
      // bf16 weights: the streamed batches equal the reference with the weights rounded to bf16;
      // the GEMM's (over 32 images) keep fp32.
      const Tensor weights_bf16 = linear_weights_bf16(q, wr.data());
      Tensor rounded_expected({rows, 13}), bf16_actual({rows, 13});
      linear_forward_ref(q, xr.view(), (rows <= 32 ? rounded_to_bf16(wr) : wr.clone()).view(), br.data(), false,
                         rounded_expected.view());
      linear_forward_cpu(q, xr.view(), wr.view(), br.data(), false, bf16_actual.view(), &weights_bf16);
      const test::Difference d = test::compare(bf16_actual.view(), rounded_expected.view());
      INFO("bf16 weights: " << d.describe());
      CHECK(test::close_enough(d, fast_tolerance));
      // ... which is not what fp32 weights give, so the line above can fail.
      if (rows <= 32) CHECK(test::compare(bf16_actual.view(), expected.view()).relative_to_scale() > 1e-4);
    }
  }
}

TEST_CASE("relu and add: fast CPU equals the reference, in place too", "[ops][relu][add]") {
  const Tensor a = test::random_tensor({2, 13, 7, 5}, 1), b = test::random_tensor({2, 13, 7, 5}, 2);
  Tensor expected(a.shape()), actual = a.clone();
  relu_forward_ref(a.view(), expected.view());
  relu_forward_cpu(actual.view(), actual.view());  // in place, as the plan runs it
  CHECK(test::compare(actual.view(), expected.view()).max_abs == 0.0);
  for (bool relu : {false, true}) {
    Tensor sum_ref(a.shape()), sum_fast = a.clone();
    add_forward_ref(a.view(), b.view(), relu, sum_ref.view());
    add_forward_cpu(sum_fast.view(), b.view(), relu, sum_fast.view());
    CHECK(test::compare(sum_fast.view(), sum_ref.view()).max_abs == 0.0);
  }
  const std::vector<float> values = {-1.0f, 0.0f, 2.5f};
  const Tensor small = Tensor::from_data({3}, values.data());
  Tensor out({3});
  relu_forward_ref(small.view(), out.view());
  CHECK(std::vector<float>(out.data(), out.data() + 3) == std::vector<float>{0.0f, 0.0f, 2.5f});
}

TEST_CASE("TaskRuns: one thread takes its own run in order and then the others' from their backs", "[ops][task_runs]") {
  // Runs for three threads over 10 tasks: [0, 3), [3, 6), [6, 10). Thread 0 alone takes them all.
  TaskRuns runs(10, 3);
  CHECK(runs.own_begin(1) == 3);
  CHECK(runs.is_next_of(0, 0));
  std::vector<int64_t> order;
  std::vector<bool> stolen;
  bool was_stolen = false;
  for (int64_t task = runs.next(0, &was_stolen); task >= 0; task = runs.next(0, &was_stolen)) {
    order.push_back(task);
    stolen.push_back(was_stolen);
  }
  CHECK(order == std::vector<int64_t>{0, 1, 2, 5, 4, 3, 9, 8, 7, 6});
  CHECK(stolen == std::vector<bool>{false, false, false, true, true, true, true, true, true, true});
  CHECK(runs.next(1) == -1);
  CHECK_FALSE(runs.is_next_of(1, 3));
  TaskRuns empty(0, 2);
  CHECK(empty.next(1) == -1);
}

TEST_CASE("TaskRuns: a thread done first takes a held-up thread's last tasks, each task once", "[ops][task_runs]") {
  // Thread 0 takes its first task and then waits until every other task is done: thread 1 must do
  // its own four and then thread 0's last three, from the back.
  constexpr int64_t count = 8;
  TaskRuns runs(count, 2);
  std::vector<int> taken_by(count, -1);
  std::vector<int64_t> order_of_1;
  std::atomic<int64_t> done{0};
  bool waited_out = false;
#pragma omp parallel num_threads(2)
  {
    const int thread = omp_get_thread_num();
    if (omp_get_num_threads() == 2) {
      int64_t task = thread == 0 ? runs.next(0) : -1;  // thread 0's first task, before thread 1 starts
#pragma omp barrier
      if (thread == 1) task = runs.next(1);
      for (; task >= 0; task = runs.next(thread)) {
        taken_by[task] = thread;
        if (thread == 1) order_of_1.push_back(task);
        ++done;
        if (thread == 0) {
          const auto start = std::chrono::steady_clock::now();
          while (done < count && std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          }
          if (done < count) waited_out = true;
        }
      }
    }
  }
  if (omp_get_max_threads() < 2) return;  // OMP_NUM_THREADS=1: there is no second thread to help
  CHECK_FALSE(waited_out);
  CHECK(taken_by == std::vector<int>{0, 1, 1, 1, 1, 1, 1, 1});
  CHECK(order_of_1 == std::vector<int64_t>{4, 5, 6, 7, 3, 2, 1});
}

TEST_CASE("conv2d: every algorithm gives the reference when OpenMP gives it fewer threads than it planned for",
          "[ops][conv2d]") {
  // Inside a parallel region with nesting off, the convolution's own regions get one thread while
  // its tasks and workspace were cut for three: that thread must take every thread's share. At 24x24
  // F(4x4)'s threads share one chunk of tiles; at 52x52 (169 tiles) each has chunks of its own.
  const Conv2dParams p = square_conv(24, 40, 3, 1, 1);
  const Tensor w = test::random_tensor({40, 24, 3, 3}, 8), b = test::random_tensor({40}, 9);
  const int levels = omp_get_max_active_levels();
  omp_set_max_active_levels(1);
  for (int64_t size : {24, 52}) {
    const Tensor x = test::random_tensor({1, 24, size, size}, 7);
    const Tensor expected = run_conv_ref(p, x, w, b.data(), true);
    for (Conv2dAlgorithm algorithm : {Conv2dAlgorithm::im2col_gemm, Conv2dAlgorithm::direct, Conv2dAlgorithm::winograd,
                                      Conv2dAlgorithm::winograd_2x2}) {
      Tensor actual;
#pragma omp parallel num_threads(2)
      {
#pragma omp single
        actual = run_conv_cpu(p, x, w, b.data(), true, 3, algorithm);
      }
      const test::Difference d = test::compare(actual.view(), expected.view());
      INFO(conv2d_algorithm_name(algorithm) << " at " << size << "x" << size << ": " << d.describe());
      CHECK(test::close_enough(d, winograd_tolerance));
    }
  }
  omp_set_max_active_levels(levels);
}
