// layers/linear.hpp: torch.nn.Linear, y = x W^T + b, on (N, in_features), with an optional fused
// ReLU (VGG's classifier.0 + classifier.1).
#pragma once

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"

namespace prism {

struct LinearParams {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = true;
};

// weight: (out_features, in_features); bias: out_features values or nullptr.
void linear_forward_ref(const LinearParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output);
void linear_forward_cpu(const LinearParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output);
// On the GPU (every pointer device memory): one cuBLAS product, then bias and ReLU.
void linear_forward_cuda(const LinearParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                         bool relu, TensorView output, const CudaContext& context);

}  // namespace prism
