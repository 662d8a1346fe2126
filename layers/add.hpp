// layers/add.hpp: the residual sum of a ResNet block (out = a + b), with an optional fused ReLU.
// The output may be the same memory as either input.
#pragma once

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"

namespace prism {

void add_forward_ref(ConstTensorView a, ConstTensorView b, bool relu, TensorView output);
void add_forward_cpu(ConstTensorView a, ConstTensorView b, bool relu, TensorView output);
void add_forward_cuda(ConstTensorView a, ConstTensorView b, bool relu, TensorView output, const CudaContext& context);

}  // namespace prism
