// layers/cpu/add.cpp: element-wise sum (and ReLU) over threads, vectorised.
#include <algorithm>
#include <limits>

#include "layers/add.hpp"

namespace prism {

void add_forward_cpu(ConstTensorView a, ConstTensorView b, bool relu, TensorView output) {
  const int64_t count = a.numel();
  const float floor = relu ? 0.0f : -std::numeric_limits<float>::infinity();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) output.data[i] = std::max(a.data[i] + b.data[i], floor);
}

}  // namespace prism
