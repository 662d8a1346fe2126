// prism/colours.cpp: normalisation and quantisation of PRISM's maps.
#include "prism/colours.hpp"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/error.hpp"
#include "prism/lane_sum.hpp"

namespace prism {

namespace {

// Blocks of a fixed size for the sums below: summed in order, the same result on any number of
// threads. Small enough to share out evenly: blocks of 64K values gave 8 images' maps at 112x112
// (301K values) five, three of them to one thread.
constexpr int64_t sum_block = 1 << 13;

// sum over i of term(i) for i in [0, count), block by block.
template <typename Term>
double blocked_sum(int64_t count, Term term) {
  const int64_t blocks = (count + sum_block - 1) / sum_block;
  std::vector<double> partial(blocks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    partial[b] = lane_sum(b * sum_block, std::min(count, (b + 1) * sum_block), term);
  }
  double sum = 0.0;
  for (double p : partial) sum += p;
  return sum;
}

// Eight values at a time, in double (GCC's vector extensions): written as scalar code, the
// clamp's branches kept the loop below from vectorising.
typedef double Doubles __attribute__((vector_size(8 * sizeof(double))));
typedef float Floats __attribute__((vector_size(8 * sizeof(float))));

// The sum (blocked_sum's), least and most of count values, in one parallel pass over them.
struct Extent {
  double sum = 0.0;
  float least = 0.0f, most = 0.0f;
};
Extent extent(const float* values, int64_t count) {
  const int64_t blocks = (count + sum_block - 1) / sum_block;
  std::vector<Extent> partial(blocks);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * sum_block, end = std::min(count, first + sum_block);
    Extent& e = partial[b];
    e.sum = lane_sum(first, end, [&](int64_t i) { return static_cast<double>(values[i]); });
    // The extremes eight lanes at a time, then across the lanes and the rest.
    Floats least = values[first] - Floats{}, most = least;
    int64_t i = first;
    for (; i + 8 <= end; i += 8) {
      Floats value;
      std::memcpy(&value, values + i, sizeof value);
      least = value < least ? value : least;
      most = value > most ? value : most;
    }
    e.least = e.most = values[first];
    for (int l = 0; l < 8; ++l) {
      e.least = std::min(e.least, least[l]);
      e.most = std::max(e.most, most[l]);
    }
    for (; i < end; ++i) {
      e.least = std::min(e.least, values[i]);
      e.most = std::max(e.most, values[i]);
    }
  }
  Extent all = partial[0];
  for (int64_t b = 1; b < blocks; ++b) {
    all.sum += partial[b].sum;
    all.least = std::min(all.least, partial[b].least);
    all.most = std::max(all.most, partial[b].most);
  }
  return all;
}

// normalise_to_colours of `count` values into `colours`, which may be `maps`.
void normalise(const float* maps, int64_t count, float* colours) {
  auto none = [&] { std::fill(colours, colours + count, 0.0f); };
  if (count < 2) return none();
  const Extent e = extent(maps, count);
  const double mean = e.sum / count;
  const double squares = blocked_sum(count, [&](int64_t i) { return (maps[i] - mean) * (maps[i] - mean); });
  const double std = std::sqrt(squares / (count - 1));  // torch.std is unbiased
  if (!(std > 0.0) || !std::isfinite(std)) return none();

  // Standardised and clipped to [-1, 1] (z), then scaled so that its minimum is 0 and its maximum
  // 1. z is monotonic in the value, so its extremes are z of the value's extremes. Divisions as
  // multiplications by the reciprocal (the results may differ in the last bit of the double,
  // which rounding to float hides nearly always). 8 images' maps at 112x112, the whole of
  // normalise: 0.51 ms with a pass for the extremes, blocks of 64K values and divisions; 0.32 with
  // the extremes in the sum's pass, vectorised, and blocks of 8K; 0.20 multiplying.
  const double inverse_std = 1.0 / std;
  auto z = [mean, inverse_std](float value) { return std::clamp((value - mean) * inverse_std, -1.0, 1.0); };
  const double low = z(e.least), high = z(e.most);
  if (!(high > low)) return none();
  const double inverse_range = 1.0 / (high - low);
  auto colour = [&](float value) {  // TorchPRISM's standardised maps are float
    return static_cast<float>((static_cast<float>(z(value)) - low) * inverse_range);
  };
  constexpr int64_t lanes = 8;
  const int64_t whole = count / lanes * lanes;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < whole; i += lanes) {  // colour() on eight values
    Floats value;
    std::memcpy(&value, maps + i, sizeof value);
    Doubles standardised = (__builtin_convertvector(value, Doubles) - mean) * inverse_std;
    standardised = standardised < -1.0 ? -1.0 : standardised;
    standardised = standardised > 1.0 ? 1.0 : standardised;
    const Doubles rounded = __builtin_convertvector(__builtin_convertvector(standardised, Floats), Doubles);
    const Floats result = __builtin_convertvector((rounded - low) * inverse_range, Floats);
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
