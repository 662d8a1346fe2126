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
// weight_bf16 (PlanOptions::bf16): the weights from linear_weights_bf16, read instead of weight by
// batches of up to 32 images (whose time is reading the weights from memory: half the bytes);
// larger batches use weight.
void linear_forward_cpu(const LinearParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                        bool relu, TensorView output, const Tensor* weight_bf16 = nullptr);
// weight (out_features, in_features) rounded to bfloat16 (to nearest, ties to even), each row's
// values two to a float, a row padded to an even count.
Tensor linear_weights_bf16(const LinearParams& params, const float* weight);
// On the GPU (every pointer device memory): one cuBLAS product, then bias and ReLU.
void linear_forward_cuda(const LinearParams& params, ConstTensorView input, ConstTensorView weight, const float* bias,
                         bool relu, TensorView output, const CudaContext& context);

}  // namespace prism
