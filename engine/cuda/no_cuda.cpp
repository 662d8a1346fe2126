// engine/cuda/no_cuda.cpp: runtime.hpp for a build without the CUDA backend: every call that
// would need a GPU throws the same clear Error.
#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"
#include "engine/tensor.hpp"

namespace prism {
namespace {
[[noreturn]] void not_built() {
  throw Error("this prism was built without the CUDA backend (reconfigure with -DPRISM_CUDA=ON on a machine with "
              "the CUDA toolkit), use --device cpu");
}
}  // namespace

bool cuda_built() { return false; }
bool cuda_device_available() { return false; }
std::string require_cuda() { not_built(); }
int64_t cuda_free_bytes() { not_built(); }
void* cuda_allocate_bytes(int64_t) { not_built(); }
void cuda_free(void*) noexcept {}
int64_t cuda_peak_allocated_bytes() {
  return 0;
}
void cuda_reset_peak_allocated() {}
void cuda_upload_bytes(void*, const void*, int64_t) { not_built(); }
void cuda_download_bytes(void*, const void*, int64_t) { not_built(); }
void cuda_copy_bytes(void*, const void*, int64_t) { not_built(); }

struct CudaContext::Handles {};
CudaContext::CudaContext(bool tf32) : tf32_(tf32) { not_built(); }
CudaContext::~CudaContext() = default;
void CudaContext::synchronize() const { not_built(); }

void channel_mean_cuda(ConstTensorView, TensorView, const CudaContext&) { not_built(); }

}  // namespace prism
