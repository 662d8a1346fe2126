// layers/ref/add.cpp: element-wise sum of two tensors of one shape.
#include "layers/add.hpp"

namespace prism {

void add_forward_ref(ConstTensorView a, ConstTensorView b, bool relu, TensorView output) {
  for (int64_t i = 0; i < a.numel(); ++i) {
    const float sum = a.data[i] + b.data[i];
    output.data[i] = relu && sum < 0.0f ? 0.0f : sum;
  }
}

}  // namespace prism
