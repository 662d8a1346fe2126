// layers/cpu/simd.hpp: one vector register of floats as GCC's vector extensions see it, sized to
// what the compiler targets (AVX-512: 16 floats, AVX: 8, plain x86-64: 4), with unaligned loads
// and stores, and a transpose of a square of them. The fast CPU kernels use it instead of
// intrinsics, so every build compiles the same code. Leaves out everything but what those kernels
// need.
#pragma once

#include <cstdint>
#include <cstring>

namespace prism {

#if defined(__AVX512F__)
inline constexpr int64_t simd_floats = 16;
#elif defined(__AVX__)
inline constexpr int64_t simd_floats = 8;
#else
inline constexpr int64_t simd_floats = 4;
#endif

typedef float SimdVector __attribute__((vector_size(simd_floats * sizeof(float))));

inline SimdVector simd_load(const float* p) {
  SimdVector v;
  std::memcpy(&v, p, sizeof(v));  // compiles to one unaligned vector load
  return v;
}

inline void simd_store(float* p, SimdVector v) {
  std::memcpy(p, &v, sizeof(v));
}

namespace simd_detail {

typedef int32_t SimdIndices __attribute__((vector_size(sizeof(SimdVector))));

// Lane j of rows i and i + d after the stage of distance d (i having bit d clear): lanes with bit
// d clear keep row i's and take row i + d's shifted down by d; lanes with it set the other way
// round. As __builtin_shuffle's indices into (row i, row i + d).
template <int64_t d, bool upper>
constexpr SimdIndices transpose_indices() {
  SimdIndices indices{};
  for (int64_t j = 0; j < simd_floats; ++j) {
    const bool set = (j & d) != 0;
    indices[j] = static_cast<int32_t>(upper ? (set ? simd_floats + j : j + d) : (set ? simd_floats + j - d : j));
  }
  return indices;
}

// Swaps the off-diagonal d x d squares of every 2d x 2d square, then the halves of those: after
// the stage of distance 1 the whole square is transposed.
template <int64_t d>
inline void transpose_stages(SimdVector (&rows)[simd_floats]) {
  if constexpr (d >= 1) {
    for (int64_t i = 0; i < simd_floats; ++i) {
      if (i & d) continue;
      const SimdVector a = rows[i], b = rows[i + d];
      rows[i] = __builtin_shuffle(a, b, transpose_indices<d, false>());
      rows[i + d] = __builtin_shuffle(a, b, transpose_indices<d, true>());
    }
    transpose_stages<d / 2>(rows);
  }
}

}  // namespace simd_detail

// rows[i][j] <-> rows[j][i] for a square of simd_floats vectors, in registers (with AVX-512, 64
// two-vector permutes).
inline void simd_transpose(SimdVector (&rows)[simd_floats]) {
  simd_detail::transpose_stages<simd_floats / 2>(rows);
}

}  // namespace prism
