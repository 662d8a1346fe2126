// prism/colours.cpp: normalisation and quantisation of PRISM's maps.
#include "prism/colours.hpp"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/error.hpp"

namespace prism {

namespace {

// sum over i of term(i) for i in [0, count), in double, by blocks of a fixed size summed in order,
// each in eight interleaved partial sums (a vector's worth: one running sum waits on every
// addition, 6 ms a pass over 64 images' maps at 224x224): the same result on any number of
// threads.
template <typename Term>
double blocked_sum(int64_t count, Term term) {
  constexpr int64_t block = 1 << 16, lanes = 8;
  const int64_t blocks = (count + block - 1) / block;
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t end = std::min(count, (b + 1) * block);
    double lane[lanes] = {};
    int64_t i = b * block;
    for (; i + lanes <= end; i += lanes) {
      for (int64_t l = 0; l < lanes; ++l) lane[l] += term(i + l);
    }
    double sum = 0.0;
    for (; i < end; ++i) sum += term(i);
    for (double l : lane) sum += l;
    partial[b] = sum;
  }
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

// Eight values at a time, in double (GCC's vector extensions): written as scalar code, the
// clamp's branches kept the loop below from vectorising.
typedef double Doubles __attribute__((vector_size(8 * sizeof(double))));
typedef float Floats __attribute__((vector_size(8 * sizeof(float))));

// normalise_to_colours of `count` values into `colours`, which may be `maps`.
void normalise(const float* maps, int64_t count, float* colours) {
  auto none = [&] { std::fill(colours, colours + count, 0.0f); };
  if (count < 2) return none();
  const double mean = blocked_sum(count, [&](int64_t i) { return static_cast<double>(maps[i]); }) / count;
  const double squares = blocked_sum(count, [&](int64_t i) { return (maps[i] - mean) * (maps[i] - mean); });
  const double std = std::sqrt(squares / (count - 1));  // torch.std is unbiased
  if (!(std > 0.0) || !std::isfinite(std)) return none();

  // Standardised and clipped to [-1, 1] (z), then scaled so that its minimum is 0 and its maximum
  // 1. z is monotonic in the value, so its extremes are z of the value's extremes.
  auto z = [mean, std](float value) { return std::clamp((value - mean) / std, -1.0, 1.0); };
  float least = maps[0], most = maps[0];
#pragma omp parallel for schedule(static) reduction(min : least) reduction(max : most)
  for (int64_t i = 0; i < count; ++i) {
    least = std::min(least, maps[i]);
    most = std::max(most, maps[i]);
  }
  const double low = z(least), high = z(most);
  if (!(high > low)) return none();
  auto colour = [&](float value) {  // TorchPRISM's standardised maps are float
    return static_cast<float>((static_cast<float>(z(value)) - low) / (high - low));
  };
  constexpr int64_t lanes = 8;
  const int64_t whole = count / lanes * lanes;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < whole; i += lanes) {  // colour() on eight values
    Floats value;
    std::memcpy(&value, maps + i, sizeof value);
    Doubles standardised = (__builtin_convertvector(value, Doubles) - mean) / std;
    standardised = standardised < -1.0 ? -1.0 : standardised;
    standardised = standardised > 1.0 ? 1.0 : standardised;
    const Doubles rounded = __builtin_convertvector(__builtin_convertvector(standardised, Floats), Doubles);
    const Floats result = __builtin_convertvector((rounded - low) / (high - low), Floats);
    std::memcpy(colours + i, &result, sizeof result);
  }
  for (int64_t i = whole; i < count; ++i) colours[i] = colour(maps[i]);
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
