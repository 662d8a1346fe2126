// layers/cpu/relu.cpp: max(x, 0) over threads, in a loop the compiler vectorises.
#include <algorithm>

#include "layers/relu.hpp"

namespace prism {

void relu_forward_cpu(ConstTensorView input, TensorView output) {
  const int64_t count = input.numel();
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) output.data[i] = std::max(input.data[i], 0.0f);
}

}  // namespace prism
