// layers/cpu/simd.hpp: one vector register of floats as GCC's vector extensions see it, sized to
// what the compiler targets (AVX-512: 16 floats, AVX: 8, plain x86-64: 4), with unaligned loads
// and stores, the sum of its lanes, a transpose of a square of them, a cache line's floats and
// prefetches of lines. The fast CPU kernels use it instead of intrinsics, so every build compiles
// the same code. Leaves out everything but what those kernels need.
#pragma once

#include <cstdint>
#include <cstring>
#include <utility>

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

inline constexpr int64_t floats_per_cache_line = 16;  // 64 bytes

// Asks for the cache line holding `address` ahead of a write to it (the line comes to this core
// exclusively, the other core's copy given up) or of a read. The empty asm statement keeps the
// prefetch: in a loop that did nothing else GCC 12 deleted the loop, prefetches and all.
inline void prefetch_for_write(const float* address) {
  __builtin_prefetch(address, 1, 3);
  asm volatile("");
}
inline void prefetch_for_read(const float* address) {
  __builtin_prefetch(address, 0, 3);
  asm volatile("");
}

inline void simd_store(float* p, SimdVector v) {
  std::memcpy(p, &v, sizeof(v));
}

// The sum of a vector's lanes, from lane 0 up (the same order wherever it is used).
inline float simd_sum(SimdVector v) {
  float sum = v[0];
  for (int64_t lane = 1; lane < simd_floats; ++lane) sum += v[lane];
  return sum;
}

namespace simd_detail {

// Lane j of rows i and i + d after the stage of distance d (i having bit d clear): lanes with bit
// d clear keep row i's and take row i + d's shifted down by d; lanes with it set the other way
// round. As __builtin_shufflevector's index into (row i, row i + d), which GCC and Clang both
// take (GCC's own __builtin_shuffle is not Clang's).
template <int64_t d, bool upper>
constexpr int transpose_index(int64_t j) {
  const bool set = (j & d) != 0;
  return static_cast<int>(upper ? (set ? simd_floats + j : j + d) : (set ? simd_floats + j - d : j));
}

template <int64_t d, bool upper, size_t... j>
inline SimdVector transpose_shuffle(SimdVector a, SimdVector b, std::index_sequence<j...>) {
  return __builtin_shufflevector(a, b, transpose_index<d, upper>(j)...);
}

// Swaps the off-diagonal d x d squares of every 2d x 2d square, then the halves of those: after
// the stage of distance 1 the whole square is transposed.
template <int64_t d>
inline void transpose_stages(SimdVector (&rows)[simd_floats]) {
  if constexpr (d >= 1) {
    constexpr auto lanes = std::make_index_sequence<simd_floats>();
    for (int64_t i = 0; i < simd_floats; ++i) {
      if (i & d) continue;
      const SimdVector a = rows[i], b = rows[i + d];
      rows[i] = transpose_shuffle<d, false>(a, b, lanes);
      rows[i + d] = transpose_shuffle<d, true>(a, b, lanes);
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
