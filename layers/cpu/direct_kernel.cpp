// layers/cpu/direct_kernel.cpp: the direct convolution's micro-kernel and the writing of its
// results into planes (layers/cpu/direct_kernel.hpp).
#include "layers/cpu/direct_kernel.hpp"

#include <algorithm>
#include <utility>

namespace prism {
namespace {

// Vector registers the accumulators may take: the rest hold the weights of one tap and the
// broadcast input. With AVX-512's 32 registers a tile of 6 pixels by 4 vectors (64 channels); with
// 16 (AVX2, SSE), 6 pixels by 2 vectors. Blocks of 3 or 4 vectors there (tiles of 4 or 3 pixels)
// leave no register for the weights: GCC then reads each weight vector from memory in every
// multiply-add, a load per multiply-add besides the broadcasts, and the loads, not the
// multiply-adds, set the pace. On an AMD Zen 3 (AVX2, 2 threads) ResNet-50 at batch 1, two plans
// alternating pass by pass in one process: every direct and F(2x2) layer faster (layer3's 1x1s
// 1.13-1.20 -> 0.92-0.96 ms, its F(2x2) 3x3s 1.40-1.44 -> 1.23-1.26) but the stem (2.78 -> 2.95),
// the forward pass 75.7 -> 69.7 ms (medians of 40); in a slower hour 87.8 -> 84.5 (of 60), and
// at batch 8 638 -> 620 (of 12).
#if defined(__AVX512F__)
constexpr int64_t accumulator_registers = 24;
constexpr int64_t most_vectors = 4;
#else
constexpr int64_t accumulator_registers = 12;
constexpr int64_t most_vectors = 2;
#endif
constexpr int64_t pixels_for(int64_t vectors) {
  return std::min(direct_most_pixels_per_tile, accumulator_registers / vectors);
}

// A DirectKernel (layers/cpu/direct_kernel.hpp) for tiles of `pixels` by `vectors`. With
// `evenly_spaced` taps it reads only the first two offsets and steps from one tap to the next: a
// 1x1 window's taps are its input's planes, F(2x2)'s the input channels of its tiles. That is one
// load a tap fewer, of the 9 or 10 that go with its 12 multiply-adds without AVX-512. On an AMD Zen
// 3 in a warm harness (one 1x1 with its residual, two threads, medians of 400 calls alternating)
// each of four ResNet-50 1x1 shapes at batch 1 and 8 ran 2-6% faster. ResNet-50 at batch 1, two
// plans of each way alternating (60 passes): forward 73.1 and 73.5 -> 71.3 and 70.8 ms (its 1x1s
// 2-7% faster, layer4.1.conv1 1.23-1.26 -> 1.16); at batch 8 (16 passes) 539 and 548 -> 527 and 522.
template <int64_t pixels, int64_t vectors, bool evenly_spaced>
void direct_kernel(const float* const* pixel_inputs, const int64_t* offsets, int64_t depth, const float* weights,
                   float* tile, bool accumulate, const float* prefetch, int64_t prefetch_lines,
                   bool fetch_input_ahead) {
  const int64_t first_offset = offsets[0], step = evenly_spaced && depth > 1 ? offsets[1] - offsets[0] : 0;
  const float* pixel[pixels];
  for (int64_t r = 0; r < pixels; ++r) pixel[r] = pixel_inputs[r];
  SimdVector sum[pixels][vectors];
  for (int64_t r = 0; r < pixels; ++r) {
    for (int64_t v = 0; v < vectors; ++v) {
      sum[r][v] = accumulate ? simd_load(tile + (r * vectors + v) * simd_floats) : SimdVector{};
    }
  }
  // Without AVX-512 a tap is 12 multiply-adds (6 cycles of the two FMA units) among 27
  // instructions, 6 of them the loop's own counting and branching and the test of fetch_input_ahead,
  // which is always on there. Two taps a pass with that test gone: on an AMD Zen 3, ResNet-50 at
  // batch 1, two plans of each way alternating pass by pass (60 passes), the forward pass 65.7 and
  // 65.8 -> 63.1 and 63.0 ms (the stem 2.67-2.74 -> 2.52-2.53, layer2's 1x1s 1.00-1.04 ->
  // 0.92-0.98, layer4.0.conv2 2.41-2.46 -> 2.23-2.26, the F(2x2) 3x3s 1.20-1.26 -> 1.17-1.22); at
  // batch 8 (16 passes) 525 and 525 -> 507 and 499. A single 1x1 in a warm harness ran 3-9% faster
  // (medians of 400 calls); four taps a pass gained about half as much. Not measured with AVX-512,
  // whose tile has twice the multiply-adds a tap, so its loop is left as it was.
#if !defined(__AVX512F__)
#pragma GCC unroll 2
#endif
  for (int64_t k = 0; k < depth; ++k, weights += vectors * simd_floats) {
    const int64_t offset = evenly_spaced ? first_offset + k * step : offsets[k];
    if (k < prefetch_lines) __builtin_prefetch(prefetch + k * floats_per_cache_line, 0, 2);
    if (direct_fetch_input_always || fetch_input_ahead)
      __builtin_prefetch(pixel[pixels - 1] + offset + floats_per_cache_line, 0, 3);
    SimdVector w[vectors];
#pragma GCC unroll 4
    for (int64_t v = 0; v < vectors; ++v) w[v] = simd_load(weights + v * simd_floats);
#pragma GCC unroll 8
    for (int64_t r = 0; r < pixels; ++r) {
      const SimdVector x = pixel[r][offset] - SimdVector{};  // broadcast
#pragma GCC unroll 4
      for (int64_t v = 0; v < vectors; ++v) sum[r][v] += x * w[v];
    }
  }
  for (int64_t r = 0; r < pixels; ++r) {
    for (int64_t v = 0; v < vectors; ++v) simd_store(tile + (r * vectors + v) * simd_floats, sum[r][v]);
  }
}

// The kernels for 1 to pixels_for(vectors) pixels, as DirectKernels holds them. A range's last
// tile used to run the full tile's kernel with its last pixel repeated. At batch 1 a 7x7 image is 8
// tiles of 6 pixels and 1 over, F(2x2)'s 4x4 tiles of a 7x7 output 2 and 4 over, its 7x7 tiles of
// a 14x14 one 8 and 1 over: 9-11% of those layers' multiply-adds were repeats. With fewer pixels a
// tile's multiply-adds wait on each other (4 cycles a tap for up to 4 pixels against 6 for 6 on
// AVX2) but take less time than the full tile's. On an AMD Zen 3, one layer in a warm harness (two
// threads, medians of 400 calls alternating, twice): 2048 -> 512 at 7x7 1.07-1.14 -> 1.03-1.08
// ms, 512 -> 2048 1.04-1.19 -> 1.00-1.13, layer4's F(2x2) 3x3 1.48-1.77 -> 1.39-1.66, layer3's
// 1.18-1.29 -> 1.15-1.23, layer4.0.downsample 2.15-2.43 -> 2.05-2.32. ResNet-50 at batch 1, two
// plans alternating pass by pass (80 passes): forward 64.5 -> 62.5 ms, layer4's layers 3-7%
// faster and layer3's F(2x2) up to 7%. At batch 8, whose 7x7 tasks take several images as one run
// of tiles, no change beyond the noise.
// Then the same calls with the range's pixels shared out evenly (direct_tile: 49 pixels as 4 calls
// of 6 and 5 of 5, not 8 of 6 and 1, whose lone pixel still took 4 cycles a tap): the 7x7 1x1s 2-7%
// faster again in the harness (four shapes, twice), F(2x2) alike; in the network (80 passes)
// layer4's direct layers 3-7% and layer3's F(2x2) 2-5% faster, layer4's F(2x2) 2% slower (16 tiles
// as 6, 5 and 5, not 6, 6 and 4), the steps' sum 74.3 -> 73.9 ms in a slow hour.
template <int64_t vectors, bool evenly_spaced, size_t... fewer_pixels>
std::array<DirectKernel, direct_most_pixels_per_tile> kernels_for(std::index_sequence<fewer_pixels...>) {
  return {direct_kernel<fewer_pixels + 1, vectors, evenly_spaced>...};
}

template <bool evenly_spaced>
std::array<DirectKernel, direct_most_pixels_per_tile> kernels_for(int64_t vectors) {
  switch (std::min(vectors, most_vectors)) {
    case 1: return kernels_for<1, evenly_spaced>(std::make_index_sequence<pixels_for(1)>());
#if defined(__AVX512F__)
    case 3: return kernels_for<3, evenly_spaced>(std::make_index_sequence<pixels_for(3)>());
    case 4: return kernels_for<4, evenly_spaced>(std::make_index_sequence<pixels_for(4)>());
#endif
    default: return kernels_for<2, evenly_spaced>(std::make_index_sequence<pixels_for(2)>());
  }
}

}  // namespace

int64_t direct_vectors_for(int64_t channels) {
  return std::clamp<int64_t>((channels + simd_floats - 1) / simd_floats, 1, most_vectors);
}

int64_t direct_pixels_per_tile(int64_t vectors) {
  return pixels_for(vectors);
}

DirectKernels::DirectKernels(int64_t vectors, const std::vector<int64_t>& tap_offsets) {
  bool evenly_spaced = true;
  for (size_t k = 2; k < tap_offsets.size() && evenly_spaced; ++k) {
    evenly_spaced = tap_offsets[k] - tap_offsets[k - 1] == tap_offsets[1] - tap_offsets[0];
  }
  by_pixels_ = evenly_spaced ? kernels_for<true>(vectors) : kernels_for<false>(vectors);
}

// A task's results (pixels, block channels) to the output's planes (channels, pixels) of one
// image, with bias, residual and ReLU, in squares of simd_floats pixels by simd_floats channels
// transposed in registers. Value by value, this was a quarter of the time of ResNet-50's widening
// 1x1s at batch 1 (layer3's conv3: 0.52 ms, 0.39 with no results written); now 0.43.
void direct_write_results(const float* results, int64_t block_channels, int64_t channels, int64_t first_channel,
                          int64_t pixel_begin, int64_t pixel_end, const float* bias, const float* residual, bool relu,
                          float* image_output, int64_t out_pixels) {
  // Whole squares, channels outermost: each plane is then written (and its residual read) in
  // order, which the hardware prefetcher follows better than a line of every plane in turn (those
  // layers with all their data in memory: 0.50 -> 0.49 ms, a harness after a 400 MB flush).
  const int64_t whole_pixels = (pixel_end - pixel_begin) / simd_floats * simd_floats;
  const int64_t whole_channels = channels / simd_floats * simd_floats;
  // The lines of planes [c, c + simd_floats), asked for a group of planes ahead: the output's with
  // intent to write, a residual's apart from it to read. With one image the threads share out its
  // channels, and the residual that the sums are written over was read by both cores in the
  // block's first 1x1: each line written waited for the other core to give up its copy. Asked
  // for early, those waits overlap. Over the whole task's products instead, the lines pushed its
  // working set out of L1 (the layer was slower where they were this core's already). ResNet-50
  // at batch 1, `prism bench` in two sets of four rounds alternating with a fresh buffer for the
  // sums (what the plan did), medians: layer3's 256 -> 1024 1x1s 1.98 and 2.06 -> 1.88 ms for
  // the five, forward 29.0 and 29.7 -> 28.6 and 29.0.
  auto fetch_planes = [&](int64_t c) {
    for (int64_t j = c; j < std::min(c + simd_floats, channels); ++j) {
      const int64_t plane = (first_channel + j) * out_pixels;
      for (int64_t pixel = pixel_begin; pixel < pixel_end + floats_per_cache_line; pixel += floats_per_cache_line) {
        const int64_t at = plane + std::min(pixel, pixel_end - 1);
        prefetch_for_write(image_output + at);
        if (residual && residual != image_output) prefetch_for_read(residual + at);
      }
    }
  };
  fetch_planes(0);
  for (int64_t c = 0; c < whole_channels; c += simd_floats) {
    fetch_planes(c + simd_floats);
    for (int64_t from = pixel_begin; from < pixel_begin + whole_pixels; from += simd_floats) {
      const float* source = results + (from - pixel_begin) * block_channels + c;
      SimdVector square[simd_floats];  // a pixel per vector, then a channel per vector
      for (int64_t i = 0; i < simd_floats; ++i) square[i] = simd_load(source + i * block_channels);
      simd_transpose(square);
      for (int64_t j = 0; j < simd_floats; ++j) {
        const int64_t plane = (first_channel + c + j) * out_pixels;
        SimdVector value = square[j] + (bias ? bias[first_channel + c + j] : 0.0f);
        if (residual) value += simd_load(residual + plane + from);
        if (relu) value = value > 0.0f ? value : SimdVector{};
        simd_store(image_output + plane + from, value);
      }
    }
  }
  // The rest one by one: every channel of the last few pixels, and the channels past the last
  // whole square.
  auto write = [&](int64_t c, int64_t begin, int64_t end) {
    const float add = bias ? bias[first_channel + c] : 0.0f;
    float* to = image_output + (first_channel + c) * out_pixels;
    const float* shortcut = residual ? residual + (first_channel + c) * out_pixels : nullptr;
    for (int64_t pixel = begin; pixel < end; ++pixel) {
      float value = results[(pixel - pixel_begin) * block_channels + c] + add;
      if (shortcut) value += shortcut[pixel];
      to[pixel] = relu ? std::max(value, 0.0f) : value;
    }
  };
  for (int64_t c = 0; c < whole_channels; ++c) write(c, pixel_begin + whole_pixels, pixel_end);
  for (int64_t c = whole_channels; c < channels; ++c) write(c, pixel_begin, pixel_end);
}

}  // namespace prism
