// layers/relu.hpp: torch.nn.ReLU. Input and output may be the same memory (inplace=True).
#pragma once

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"

namespace prism {

void relu_forward_ref(ConstTensorView input, TensorView output);
void relu_forward_cpu(ConstTensorView input, TensorView output);
void relu_forward_cuda(ConstTensorView input, TensorView output, const CudaContext& context);

}  // namespace prism
