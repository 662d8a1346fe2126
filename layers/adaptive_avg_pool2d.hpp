// layers/adaptive_avg_pool2d.hpp: torch.nn.AdaptiveAvgPool2d to any output size. Output cell i
// averages input rows [floor(i * H / out_h), ceil((i + 1) * H / out_h)), PyTorch's bins, which
// overlap when H is not a multiple of out_h and repeat rows when H < out_h.
#pragma once

#include "engine/cuda/runtime.hpp"
#include "engine/tensor.hpp"

namespace prism {

struct AdaptiveAvgPool2dParams {
  int64_t output_h = 1, output_w = 1;
};

Shape adaptive_avg_pool2d_output_shape(const AdaptiveAvgPool2dParams& params, const Shape& input_shape);

void adaptive_avg_pool2d_forward_ref(const AdaptiveAvgPool2dParams& params, ConstTensorView input, TensorView output);
void adaptive_avg_pool2d_forward_cpu(const AdaptiveAvgPool2dParams& params, ConstTensorView input, TensorView output);

void adaptive_avg_pool2d_forward_cuda(const AdaptiveAvgPool2dParams& params, ConstTensorView input,
                                      TensorView output, const CudaContext& context);

// The bin boundaries, shared by every version: [begin, end) of input index for output index i.
PRISM_HOST_DEVICE inline int64_t adaptive_bin_begin(int64_t i, int64_t in_size, int64_t out_size) {
  return i * in_size / out_size;
}
PRISM_HOST_DEVICE inline int64_t adaptive_bin_end(int64_t i, int64_t in_size, int64_t out_size) {
  return ((i + 1) * in_size + out_size - 1) / out_size;
}

}  // namespace prism
