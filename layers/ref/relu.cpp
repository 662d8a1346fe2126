// layers/ref/relu.cpp: max(x, 0), one element at a time.
#include "layers/relu.hpp"

namespace prism {

void relu_forward_ref(ConstTensorView input, TensorView output) {
  for (int64_t i = 0; i < input.numel(); ++i) {
    output.data[i] = input.data[i] > 0.0f ? input.data[i] : 0.0f;
  }
}

}  // namespace prism
