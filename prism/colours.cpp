// prism/colours.cpp: normalisation and quantisation of PRISM's maps.
#include "prism/colours.hpp"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <vector>

#include "engine/error.hpp"

namespace prism {

namespace {

// sum over i of term(i) for i in [0, count), in double, by blocks of a fixed size summed in order:
// the same result on any number of threads.
template <typename Term>
double blocked_sum(int64_t count, Term term) {
  constexpr int64_t block = 1 << 16;
  const int64_t blocks = (count + block - 1) / block;
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    double sum = 0.0;
    for (int64_t i = b * block; i < std::min(count, (b + 1) * block); ++i) sum += term(i);
    partial[b] = sum;
  }
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

}  // namespace

namespace {

// normalise_to_colours of `count` values into `colours`, which may be `maps`.
void normalise(const float* maps, int64_t count, float* colours) {
  auto none = [&] { std::fill(colours, colours + count, 0.0f); };
  if (count < 2) return none();
  const double mean = blocked_sum(count, [&](int64_t i) { return static_cast<double>(maps[i]); }) / count;
  const double squares = blocked_sum(count, [&](int64_t i) { return (maps[i] - mean) * (maps[i] - mean); });
  const double std = std::sqrt(squares / (count - 1));  // torch.std is unbiased
  if (!(std > 0.0) || !std::isfinite(std)) return none();

  double low = 1.0, high = -1.0;
#pragma omp parallel for schedule(static) reduction(min : low) reduction(max : high)
  for (int64_t i = 0; i < count; ++i) {
    const double z = std::clamp((maps[i] - mean) / std, -1.0, 1.0);
    colours[i] = static_cast<float>(z);
    low = std::min(low, z);
    high = std::max(high, z);
  }
  if (!(high > low)) return none();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < count; ++i) colours[i] = static_cast<float>((colours[i] - low) / (high - low));
}

}  // namespace

Tensor normalise_to_colours(ConstTensorView maps) {
  Tensor colours = Tensor::uninitialized(maps.shape);
  normalise(maps.data, maps.numel(), colours.data());
  return colours;
}

void normalise_to_colours_in_place(TensorView maps) {
  normalise(maps.data, maps.numel(), maps.data);
}

Tensor quantise_colours(ConstTensorView maps, ColourFilter filter) {
  if (maps.shape.size() != 4 || maps.dim(1) != 3) throw Error("quantisation needs (N, 3, H, W) maps");
  Tensor colours = normalise_to_colours(maps);
  const int64_t batch = maps.dim(0), plane = maps.dim(2) * maps.dim(3);
  // Each channel becomes 0, 1 or 2 halves; a colour is one of 27 codes.
  auto level = [](float value) { return static_cast<int>(std::nearbyint(value / 0.5f)); };
  std::vector<int> codes(batch * plane);
  std::vector<std::bitset<27>> present(batch);
  for (int64_t n = 0; n < batch; ++n) {
    float* image = colours.data() + n * 3 * plane;
    for (int64_t p = 0; p < plane; ++p) {
      int code = 0;
      for (int c = 0; c < 3; ++c) {
        const int l = std::clamp(level(image[c * plane + p]), 0, 2);
        image[c * plane + p] = 0.5f * static_cast<float>(l);
        code = code * 3 + l;
      }
      codes[n * plane + p] = code;
      present[n].set(code);
    }
  }
  if (filter == ColourFilter::all) return colours;
  std::bitset<27> common;
  common.set();
  for (const auto& colours_of_image : present) common &= colours_of_image;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t p = 0; p < plane; ++p) {
      const bool shared = common.test(codes[n * plane + p]);
      if (shared == (filter == ColourFilter::common)) continue;
      for (int c = 0; c < 3; ++c) colours.data()[(n * 3 + c) * plane + p] = 0.0f;
    }
  }
  return colours;
}

}  // namespace prism
