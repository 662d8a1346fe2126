// layers/cpu/linear.cpp: Linear, y (N, out) = x (N, in) W^T + b, then ReLU. For a few images the
// layer is a walk through the weights (VGG's classifier.0 is 411 MB for 8 x 102 M multiply-adds),
// so the time is what reading W once from memory takes: every row of W meets every image while
// it is in registers (in bf16, an opt-in, half as many bytes). For many images the arithmetic
// dominates and one Eigen GEMM does it.
#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <cstring>

#include "layers/cpu/simd.hpp"
#include "layers/linear.hpp"

namespace prism {
namespace {

// Images up to this many go through the weight-streaming kernel, in blocks of images_per_pass:
// two rows of W against 8 images are 16 accumulators (half of AVX-512's registers; narrower
// targets spill a few, which costs little next to reading W from memory).
constexpr int64_t streaming_largest_batch = 32;
constexpr int64_t images_per_pass = 8;
constexpr int64_t rows_per_pass = 2;
// How far ahead of its use each row's stream of weights is fetched: 4 KiB. Each thread reads two
// rows at a time, two streams 1-100 KB apart that the hardware prefetcher does not keep far enough
// ahead of (a row's end continues into the row after the next pair's). ResNet-50's fc at batch 1
// 0.38 -> 0.20 ms; VGG-16's classifier at batch 1 12.0 / 2.5 / 0.62 -> 8.1 / 1.6 / 0.41 ms (a
// harness alternating the two builds' passes in one process), at batch 8 29.0 / 4.3 -> 22.5 / 3.3.
constexpr int64_t prefetch_ahead_bytes = 4096;

// The weights as dot_rows reads them: a vector of a row from element k, or one element.
struct Fp32Weights {
  const float* w;
  int64_t in_features;
  SimdVector vector(int64_t row, int64_t k) const { return simd_load(w + row * in_features + k); }
  float at(int64_t row, int64_t k) const { return w[row * in_features + k]; }
  void prefetch(int64_t row, int64_t k) const { __builtin_prefetch(w + row * in_features + k); }
  static constexpr int64_t value_bytes = sizeof(float);
};

// bf16 (linear_weights_bf16): the upper halves of floats, widened by a shift.
typedef uint16_t Bf16Vector __attribute__((vector_size(simd_floats * sizeof(uint16_t))));
typedef uint32_t BitsVector __attribute__((vector_size(simd_floats * sizeof(uint32_t))));
struct Bf16Weights {
  const char* w;
  int64_t row_bytes;
  SimdVector vector(int64_t row, int64_t k) const {
    Bf16Vector halves;
    std::memcpy(&halves, w + row * row_bytes + k * sizeof(uint16_t), sizeof(halves));
    return reinterpret_cast<SimdVector>(__builtin_convertvector(halves, BitsVector) << 16);
  }
  void prefetch(int64_t row, int64_t k) const { __builtin_prefetch(w + row * row_bytes + k * sizeof(uint16_t)); }
  static constexpr int64_t value_bytes = sizeof(uint16_t);
  float at(int64_t row, int64_t k) const {
    uint16_t half;
    std::memcpy(&half, w + row * row_bytes + k * sizeof(uint16_t), sizeof(half));
    const uint32_t bits = uint32_t{half} << 16;
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
};

// y[n][o] for images [n_begin, n_end) and output rows [o_begin, o_end), o_end - o_begin <= 2.
template <typename Weights>
void dot_rows(const LinearParams& p, const float* x, const Weights& w, int64_t n_begin, int64_t n_end, int64_t o_begin,
              int64_t o_end, float* y) {
  SimdVector sum[rows_per_pass][images_per_pass] = {};
  const int64_t whole = p.in_features / simd_floats * simd_floats;
  const int64_t rows = o_end - o_begin, images = n_end - n_begin;
  constexpr int64_t ahead = prefetch_ahead_bytes / Weights::value_bytes;
  for (int64_t k = 0; k < whole; k += simd_floats) {
    for (int64_t r = 0; r < rows; ++r) {  // a line ahead in this row, or in the row rows_per_pass on
      if (k + ahead < p.in_features) {
        w.prefetch(o_begin + r, k + ahead);
      } else if (o_begin + r + rows_per_pass < p.out_features) {
        w.prefetch(o_begin + r + rows_per_pass, k + ahead - p.in_features);
      }
    }
    SimdVector weights[rows_per_pass];
    for (int64_t r = 0; r < rows_per_pass; ++r) weights[r] = r < rows ? w.vector(o_begin + r, k) : SimdVector{};
    for (int64_t i = 0; i < images_per_pass; ++i) {
      if (i >= images) break;
      const SimdVector value = simd_load(x + (n_begin + i) * p.in_features + k);
      for (int64_t r = 0; r < rows_per_pass; ++r) sum[r][i] += weights[r] * value;
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < images; ++i) {
      const float* image = x + (n_begin + i) * p.in_features;
      float total = simd_sum(sum[r][i]);
      for (int64_t k = whole; k < p.in_features; ++k) total += w.at(o_begin + r, k) * image[k];
      y[(n_begin + i) * p.out_features + o_begin + r] = total;
    }
  }
}

}  // namespace

Tensor linear_weights_bf16(const LinearParams& p, const float* weight) {
  const int64_t row_floats = (p.in_features + 1) / 2;
  Tensor packed({p.out_features, row_floats}, Lifetime::lasting);  // zero: the padding
  char* to = reinterpret_cast<char*>(packed.data());
  for (int64_t o = 0; o < p.out_features; ++o) {
    for (int64_t k = 0; k < p.in_features; ++k) {
      uint32_t bits;
      std::memcpy(&bits, weight + o * p.in_features + k, sizeof(bits));
      const uint16_t half = static_cast<uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
      std::memcpy(to + (o * row_floats * 2 + k) * sizeof(uint16_t), &half, sizeof(half));
    }
  }
  return packed;
}

void linear_forward_cpu(const LinearParams& p, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output, const Tensor* weight_bf16) {
  const int64_t batch = input.dim(0);
  if (batch <= streaming_largest_batch) {
    const int64_t row_pairs = (p.out_features + rows_per_pass - 1) / rows_per_pass;
    auto stream = [&](const auto& weights) {
#pragma omp parallel for schedule(static)
      for (int64_t pair = 0; pair < row_pairs; ++pair) {
        const int64_t o_begin = pair * rows_per_pass, o_end = std::min(p.out_features, o_begin + rows_per_pass);
        for (int64_t n = 0; n < batch; n += images_per_pass) {
          dot_rows(p, input.data, weights, n, std::min(batch, n + images_per_pass), o_begin, o_end, output.data);
        }
      }
    };
    if (weight_bf16) {
      stream(Bf16Weights{reinterpret_cast<const char*>(weight_bf16->data()),
                         weight_bf16->dim(1) * static_cast<int64_t>(sizeof(float))});
    } else {
      stream(Fp32Weights{weight.data, p.in_features});
    }
  } else {
    using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    Eigen::Map<const RowMatrix> x(input.data, batch, p.in_features);            // (N, in)
    Eigen::Map<const RowMatrix> w(weight.data, p.out_features, p.in_features);  // (out, in)
    Eigen::Map<RowMatrix> y(output.data, batch, p.out_features);                // (N, out)
    y.noalias() = x * w.transpose();
  }
  for (int64_t n = 0; n < batch; ++n) {
    float* row = output.data + n * p.out_features;
    for (int64_t o = 0; o < p.out_features; ++o) {
      const float value = row[o] + (bias ? bias[o] : 0.0f);
      row[o] = relu ? std::max(value, 0.0f) : value;
    }
  }
}

}  // namespace prism
