// layers/cpu/simd.hpp: one vector register of floats as GCC's vector extensions see it, sized to
// what the compiler targets (AVX-512: 16 floats, AVX: 8, plain x86-64: 4), with unaligned loads
// and stores. The fast CPU kernels use it instead of intrinsics, so every build compiles the same
// code. Leaves out everything but what those kernels need.
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

}  // namespace prism
