// layers/cuda/linear.cu: y = x W^T + b as one cuBLAS product. cuBLAS is column-major: the
// row-major (N, out) result is, to it, the column-major (out, N) matrix W * x^T, where the
// row-major weight (out, in) reads as a column-major (in, out) matrix, hence the transpose.
#include "engine/cuda/check.cuh"
#include "layers/cuda/epilogue.cuh"
#include "layers/linear.hpp"

namespace prism {

void linear_forward_cuda(const LinearParams& p, ConstTensorView input, ConstTensorView weight, const float* bias,
                         bool relu, TensorView output, const CudaContext& context) {
  const int64_t batch = input.dim(0);
  const float one = 1.0f, zero = 0.0f;
  cublas_check(cublasSgemm(blas_of(context), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(p.out_features),
                           static_cast<int>(batch), static_cast<int>(p.in_features), &one, weight.data,
                           static_cast<int>(p.in_features), input.data, static_cast<int>(p.in_features), &zero,
                           output.data, static_cast<int>(p.out_features)),
               "linear layer product");
  apply_epilogue(output.data, bias, p.out_features, 1, nullptr, relu, output.numel(), context);
}

}  // namespace prism
