// engine/cuda/runtime.cu: device memory, copies and the per-plan stream and cuBLAS handle.
#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "engine/cuda/check.cuh"

namespace prism {
namespace {

// Sizes of the blocks cuda_allocate_bytes handed out, for the peak that `prism bench` reports.
// Process-wide like the GPU memory it counts; nothing in a forward pass reads it.
struct AllocationLedger {
  std::mutex mutex;
  std::unordered_map<void*, int64_t> sizes;
  int64_t held = 0, peak = 0;
};

AllocationLedger& ledger() {
  static AllocationLedger instance;
  return instance;
}

}  // namespace

bool cuda_built() { return true; }

bool cuda_device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

std::string require_cuda() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    throw Error(std::string("no usable CUDA device: ") + cudaGetErrorString(status) + " (use --device cpu)");
  }
  if (count == 0) throw Error("no CUDA device found (use --device cpu)");
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  cudaDeviceProp properties{};
  cuda_check(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties");
  return properties.name;
}

int64_t cuda_free_bytes() {
  size_t free = 0, total = 0;
  cuda_check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  return static_cast<int64_t>(free);
}

void* cuda_allocate_bytes(int64_t size) {
  void* memory = nullptr;
  const size_t bytes = static_cast<size_t>(size > 0 ? size : 1);
  const cudaError_t status = cudaMalloc(&memory, bytes);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it, so that the next call does not report it again
    if (status == cudaErrorMemoryAllocation) {
      throw Error("out of GPU memory allocating " + std::to_string(bytes >> 20) + " MiB (try a smaller --batch)");
    }
    throw Error(std::string("cannot allocate GPU memory: ") + cudaGetErrorString(status) + " (use --device cpu)");
  }
  AllocationLedger& book = ledger();
  std::lock_guard<std::mutex> lock(book.mutex);
  book.sizes[memory] = static_cast<int64_t>(bytes);
  book.held += static_cast<int64_t>(bytes);
  book.peak = std::max(book.peak, book.held);
  return memory;
}

int64_t cuda_peak_allocated_bytes() {
  AllocationLedger& book = ledger();
  std::lock_guard<std::mutex> lock(book.mutex);
  return book.peak;
}

void cuda_reset_peak_allocated() {
  AllocationLedger& book = ledger();
  std::lock_guard<std::mutex> lock(book.mutex);
  book.peak = book.held;
}

// Waits for the GPU first: a tensor may go out of scope on the host while kernels queued on a
// stream still read it, and its memory must not be handed out again under them.
void cuda_free(void* memory) noexcept {
  if (!memory) return;
  cudaDeviceSynchronize();
  cudaFree(memory);
  AllocationLedger& book = ledger();
  std::lock_guard<std::mutex> lock(book.mutex);
  const auto block = book.sizes.find(memory);
  if (block == book.sizes.end()) return;
  book.held -= block->second;
  book.sizes.erase(block);
}

void cuda_upload_bytes(void* device, const void* host, int64_t bytes) {
  cuda_check(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice), "copy to the GPU");
}

void cuda_download_bytes(void* host, const void* device, int64_t bytes) {
  cuda_check(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost), "copy from the GPU");
}

void cuda_copy_bytes(void* to, const void* from, int64_t bytes) {
  cuda_check(cudaMemcpy(to, from, bytes, cudaMemcpyDeviceToDevice), "copy on the GPU");
  // A device-to-device cudaMemcpy may return before it is done; callers expect it finished.
  cuda_check(cudaStreamSynchronize(nullptr), "copy on the GPU");
}

CudaContext::CudaContext(bool tf32) : tf32_(tf32), handles_(std::make_unique<Handles>()) {
  require_cuda();
  // A blocking stream: the plain (synchronous) copies in this file then wait for its kernels and
  // its kernels for them, so an upload is complete before a kernel reads it and a download sees
  // every kernel before it.
  cuda_check(cudaStreamCreate(&handles_->stream), "cudaStreamCreate");
  if (cublasCreate(&handles_->blas) != CUBLAS_STATUS_SUCCESS) {
    cudaStreamDestroy(handles_->stream);
    throw Error("cuBLAS could not start (cublasCreate failed)");
  }
  cublas_check(cublasSetStream(handles_->blas, handles_->stream), "cublasSetStream");
  // fp32 by default: cuBLAS's pedantic mode rules out TF32 and other reduced-precision paths.
  cublas_check(cublasSetMathMode(handles_->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH),
               "cublasSetMathMode");
}

CudaContext::~CudaContext() {
  if (handles_->blas) cublasDestroy(handles_->blas);
  if (handles_->stream) cudaStreamDestroy(handles_->stream);
}

void CudaContext::synchronize() const { cuda_check(cudaStreamSynchronize(handles_->stream), "a kernel failed"); }

}  // namespace prism
