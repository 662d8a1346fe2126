// engine/cuda/check.cuh: for .cu files only: the CUDA and cuBLAS headers, the context's handles,
// error checks that turn a failed call into prism::Error, and the launch shape of element-wise
// kernels.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"

namespace prism {

struct CudaContext::Handles {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
};

inline void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

inline void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw Error(std::string("cuBLAS: ") + what + ": " + cublasGetStatusString(status));
  }
}

// After a launch: a bad configuration shows here at once; faults inside the kernel show at the
// next synchronisation.
inline void cuda_check_launch(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

inline cudaStream_t stream_of(const CudaContext& context) { return context.handles().stream; }
inline cublasHandle_t blas_of(const CudaContext& context) { return context.handles().blas; }

// Element-wise kernels: 256 threads per block and a grid-stride loop over at most this many
// blocks, which fills an H100 or H200 several times over.
constexpr int cuda_block_threads = 256;
inline unsigned cuda_blocks_for(int64_t count) {
  const int64_t blocks = (count + cuda_block_threads - 1) / cuda_block_threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

}  // namespace prism
