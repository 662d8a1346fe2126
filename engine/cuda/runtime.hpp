// engine/cuda/runtime.hpp: the engine's whole contact with the CUDA runtime, seen from code that
// is not compiled by nvcc: device memory, copies, and the per-plan context (a stream and a cuBLAS
// handle). Without the CUDA backend built in (PRISM_CUDA=OFF, or no toolkit) the same functions
// exist and throw an Error saying so, so callers need no #ifdef.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

// Marks small inline functions that CUDA kernels share with host code (nvcc compiles them twice).
#ifdef __CUDACC__
#define PRISM_HOST_DEVICE __host__ __device__
#else
#define PRISM_HOST_DEVICE
#endif

namespace prism {

// True when this binary was built with the CUDA backend.
bool cuda_built();

// True when CUDA is built in and a GPU is there to run it; never throws.
bool cuda_device_available();

// Throws an Error that says why CUDA cannot run here (not built in, no GPU, driver too old);
// returns the GPU's name ("NVIDIA H200") when it can.
std::string require_cuda();

// Free GPU memory in bytes (cudaMemGetInfo), for tests and reports.
int64_t cuda_free_bytes();

// Device memory. cuda_allocate throws an Error naming the size on failure.
void* cuda_allocate_bytes(int64_t bytes);
inline float* cuda_allocate(int64_t floats) { return static_cast<float*>(cuda_allocate_bytes(floats * 4)); }
void cuda_free(void* memory) noexcept;

// The most GPU memory this process held through cuda_allocate_bytes at once since the last reset
// (what `prism bench` reports; like PyTorch's max_memory_allocated it leaves out the CUDA
// context and cuBLAS's own workspace).
int64_t cuda_peak_allocated_bytes();
void cuda_reset_peak_allocated();

// Copies that wait for the work queued before them (plans use blocking streams) and finish
// before they return.
void cuda_upload_bytes(void* device, const void* host, int64_t bytes);
void cuda_download_bytes(void* host, const void* device, int64_t bytes);
void cuda_copy_bytes(void* to, const void* from, int64_t bytes);  // device to device
inline void cuda_upload(float* device, const float* host, int64_t floats) { cuda_upload_bytes(device, host, floats * 4); }
inline void cuda_download(float* host, const float* device, int64_t floats) {
  cuda_download_bytes(host, device, floats * 4);
}
inline void cuda_copy(float* to, const float* from, int64_t floats) { cuda_copy_bytes(to, from, floats * 4); }

// GPU scratch of any element type (doubles, counters) that kernels share with the host for one
// computation; freed when it goes. Tensors are for float activations, this is for the rest.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(int64_t bytes) : memory_(cuda_allocate_bytes(bytes)) {}
  ~DeviceBuffer() { cuda_free(memory_); }
  DeviceBuffer(DeviceBuffer&& other) noexcept : memory_(other.memory_) { other.memory_ = nullptr; }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(memory_, other.memory_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(memory_);
  }

 private:
  void* memory_ = nullptr;
};

// What a plan's kernels run on: one stream (so no step waits on the host) and one cuBLAS handle
// bound to it. Owned by a Plan; the engine keeps no global CUDA state of its own.
class CudaContext {
 public:
  // tf32: let cuBLAS use TF32 tensor cores for fp32 products (faster, about 1e-3 relative error).
  explicit CudaContext(bool tf32 = false);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  void synchronize() const;  // waits for the stream; throws an Error on any kernel failure
  bool tf32() const { return tf32_; }

  struct Handles;  // cudaStream_t and cublasHandle_t, defined where CUDA's headers are included
  const Handles& handles() const { return *handles_; }

 private:
  bool tf32_;
  std::unique_ptr<Handles> handles_;
};

}  // namespace prism
