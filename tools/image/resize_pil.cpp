// tools/image/resize_pil.cpp: PIL's two-pass resampling (Pillow's libImaging/Resample.c) for the
// bilinear filter, written from its description: per output pixel a window of input pixels
// weighted by a triangle of half-width max(1, scale), weights normalised to sum 1 and then turned
// into 22-bit fixed point; each pass rounds and clips to 8 bits.
#include <algorithm>
#include <cmath>

#include "engine/error.hpp"
#include "tools/image/image.hpp"

namespace prism {
namespace {

constexpr int precision_bits = 32 - 8 - 2;  // fixed-point fraction bits for 8-bit images

// For every output index: the first input index, how many inputs, and their fixed-point weights.
struct ResampleWeights {
  int64_t taps = 0;  // weights per output index (the widest window)
  std::vector<int64_t> first, count;
  std::vector<int32_t> weights;  // (out_size, taps)
};

ResampleWeights precompute_weights(int64_t in_size, int64_t out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // the triangle's support is 1 input pixel
  ResampleWeights w;
  w.taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  w.first.resize(out_size);
  w.count.resize(out_size);
  w.weights.assign(out_size * w.taps, 0);
  std::vector<double> k(w.taps);
  for (int64_t i = 0; i < out_size; ++i) {
    const double center = (i + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(0, static_cast<int64_t>(center - support + 0.5));
    const int64_t hi = std::min<int64_t>(in_size, static_cast<int64_t>(center + support + 0.5));
    double total = 0.0;
    for (int64_t x = lo; x < hi; ++x) {
      const double distance = std::abs((x - center + 0.5) / filter_scale);
      k[x - lo] = distance < 1.0 ? 1.0 - distance : 0.0;
      total += k[x - lo];
    }
    for (int64_t x = lo; x < hi; ++x) {
      const double normalised = total != 0.0 ? k[x - lo] / total : k[x - lo];
      const double fixed = normalised * (1 << precision_bits);
      w.weights[i * w.taps + (x - lo)] = static_cast<int32_t>(fixed < 0 ? fixed - 0.5 : fixed + 0.5);
    }
    w.first[i] = lo;
    w.count[i] = hi - lo;
  }
  return w;
}

uint8_t round_and_clip(int32_t sum) {
  return static_cast<uint8_t>(std::clamp(sum >> precision_bits, 0, 255));
}

// One pass along x (horizontal) or y (vertical) of an interleaved RGB image.
Image resample_pass(const Image& in, int64_t out_size, bool horizontal) {
  const ResampleWeights w = precompute_weights(horizontal ? in.width : in.height, out_size);
  Image out;
  out.width = horizontal ? out_size : in.width;
  out.height = horizontal ? in.height : out_size;
  out.rgb.resize(static_cast<size_t>(out.width * out.height * 3));
  for (int64_t y = 0; y < out.height; ++y) {
    for (int64_t x = 0; x < out.width; ++x) {
      const int64_t i = horizontal ? x : y;
      const int32_t* k = &w.weights[i * w.taps];
      for (int c = 0; c < 3; ++c) {
        int32_t sum = 1 << (precision_bits - 1);  // rounds the final shift to nearest
        for (int64_t t = 0; t < w.count[i]; ++t) {
          const int64_t sx = horizontal ? w.first[i] + t : x;
          const int64_t sy = horizontal ? y : w.first[i] + t;
          sum += in.rgb[(sy * in.width + sx) * 3 + c] * k[t];
        }
        out.rgb[(y * out.width + x) * 3 + c] = round_and_clip(sum);
      }
    }
  }
  return out;
}

}  // namespace

Image resize_bilinear_pil(const Image& image, int64_t width, int64_t height) {
  if (width <= 0 || height <= 0)
    throw Error("cannot resize an image to " + std::to_string(width) + "x" + std::to_string(height));
  Image result = image.width != width ? resample_pass(image, width, true) : image;
  if (result.height != height) result = resample_pass(result, height, false);
  return result;
}

Image crop(const Image& image, int64_t left, int64_t top, int64_t width, int64_t height) {
  if (left < 0 || top < 0 || left + width > image.width || top + height > image.height) {
    throw Error("crop window lies outside the image");
  }
  Image out;
  out.width = width;
  out.height = height;
  out.rgb.resize(static_cast<size_t>(width * height * 3));
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = &image.rgb[((top + y) * image.width + left) * 3];
    std::copy(row, row + width * 3, &out.rgb[y * width * 3]);
  }
  return out;
}

}  // namespace prism
