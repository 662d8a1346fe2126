// layers/cpu/direct_kernel.hpp: the micro-kernel of the direct convolution
// (layers/cpu/conv2d_direct.cpp), also the products of Winograd's F(2x2, 3x3)
// (layers/cpu/conv2d_winograd_2x2.cpp), and the writing of its results into an image's planes.
// The kernel keeps a tile of a few pixels by one block of up to 4 vectors of output channels in
// registers, and for each tap broadcasts the input value every pixel sees through it and multiplies
// it with that tap's vectors of weights. A pixel is anything the kernel reads through a pointer
// and a tap's offset from it: an input pixel whose window's taps are offsets into the padded image,
// or a Winograd tile whose taps are the input channels of its transformed values.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <vector>

#include "layers/cpu/simd.hpp"

namespace prism {

// Vectors of output channels in one block (1 to 4 with AVX-512, 1 or 2 with 16 vector registers)
// for `channels` output channels, and pixels in the kernel's tile for that many vectors (as many
// as its registers hold: 6 for 4 vectors with AVX-512, 6 for 2 with AVX2).
int64_t direct_vectors_for(int64_t channels);
int64_t direct_pixels_per_tile(int64_t vectors);

// tile (pixels, vectors * simd_floats) = (or += with accumulate) the sum over taps [0, depth) of
// pixel_inputs[r][offsets[k]] (pixel r's input through tap k) times weights (depth, vectors *
// simd_floats). Along the way it asks for the first prefetch_lines cache lines from prefetch (into
// L2), one per tap, and with fetch_input_ahead each tap also for the cache line after the last
// pixel's (into L1).
using DirectKernel = void (*)(const float* const* pixel_inputs, const int64_t* offsets, int64_t depth,
                              const float* weights, float* tile, bool accumulate, const float* prefetch,
                              int64_t prefetch_lines, bool fetch_input_ahead);
// The most pixels a kernel's tile has, for any number of vectors: their pointers stay in general
// registers.
inline constexpr int64_t direct_most_pixels_per_tile = 8;

// The kernels for tiles of 1 to direct_pixels_per_tile(vectors) pixels by `vectors` vectors, over
// taps at tap_offsets (each call's offsets a slice of them). Where they are evenly spaced, the
// kernels read only the first two of a call's offsets and step from there. A range whose pixels
// do not fill whole tiles calls kernels for fewer pixels (direct_tile).
class DirectKernels {
 public:
  DirectKernels(int64_t vectors, const std::vector<int64_t>& tap_offsets);
  // The kernel for tiles of `pixels` pixels, 1 to direct_pixels_per_tile(vectors).
  DirectKernel operator()(int64_t pixels) const { return by_pixels_[pixels - 1]; }

 private:
  std::array<DirectKernel, direct_most_pixels_per_tile> by_pixels_{};
};

// One kernel call of a range: its first pixel and how many from there.
struct DirectTile {
  int64_t first, pixels;
};

// Call `call` of a range of `pixels` pixels cut into `calls` kernel calls (as many as tiles of
// pixels_per_tile take) of sizes that differ by one at most.
inline DirectTile direct_tile(int64_t pixels, int64_t calls, int64_t call) {
  const int64_t size = pixels / calls, longer = pixels % calls;  // the first `longer` calls take one more
  return {call * size + std::min(call, longer), size + (call < longer ? 1 : 0)};
}

// Whether every kernel call fetches its input ahead (fetch_input_ahead), or only where the callers
// find the input in another core's cache (conv2d_direct.cpp). With AVX-512's blocks of 4 vectors a
// line of input feeds 4 multiply-adds a value, and on the Xeon of bench/ windows of several taps
// ran a little slower fetching ahead (the stem 1.05 -> 1.11 ms). With 16 vector registers (AVX2) a
// block has 2 vectors, each line feeds half as many multiply-adds and must come twice as fast, and
// L2's latency showed. On an AMD Zen 3, ResNet-50 at batch 1 in one process, two plans of each
// way alternating pass by pass (50 passes): the forward pass 74.7 and 76.2 -> 70.5 and 72.6 ms (the
// stem 3.16 -> 2.72, layer2.0.conv2 2.38-2.49 -> 2.10-2.12, layer3.1's F(2x2) 3x3 1.41-1.46 ->
// 1.22-1.24, layer3's conv1s 0.95-1.01 -> 0.87-0.91); at batch 8 (one plan each, 16 passes, the direct
// kernel's layers only) 695 -> 622 ms, layer3's 1024 -> 256 1x1s 14.7-17.6 -> 8.0-8.4 ms and
// layer4.0.conv1 27.1 -> 15.6. Two lines ahead instead of one were no faster.
#if defined(__AVX512F__)
inline constexpr bool direct_fetch_input_always = false;
#else
inline constexpr bool direct_fetch_input_always = true;
#endif

// The cache lines of the weights that come next (`lines` of them from `next`; none where `next` is
// null), shared out over the `calls` kernel calls of `depth` taps that run before they are
// needed: each call asks for an equal share, one line a tap from its first, so that the fetches
// spread over the calls instead of queueing behind each other in the first few.
class WeightPrefetch {
 public:
  WeightPrefetch(const float* next, int64_t lines, int64_t calls, int64_t depth)
      : next_(next), lines_(next ? lines : 0), share_(std::clamp<int64_t>((lines_ + calls - 1) / calls, 1, depth)) {}
  // The kernel's prefetch and prefetch_lines arguments for call `call`.
  const float* first_line(int64_t call) const {
    return call * share_ < lines_ ? next_ + call * share_ * floats_per_cache_line : nullptr;
  }
  int64_t lines(int64_t call) const { return std::min(share_, lines_ - call * share_); }

 private:
  const float* next_;
  int64_t lines_, share_;
};

// results (pixels [pixel_begin, pixel_end), block_channels) into the planes (channels, out_pixels)
// of one image: its channels [first_channel, first_channel + channels), plus bias (indexed by the
// output channel, or null), plus residual (shaped like the image, or null; it may be image_output
// itself), then ReLU.
void direct_write_results(const float* results, int64_t block_channels, int64_t channels, int64_t first_channel,
                          int64_t pixel_begin, int64_t pixel_end, const float* bias, const float* residual, bool relu,
                          float* image_output, int64_t out_pixels);

}  // namespace prism
