// engine/tensor.hpp: the engine's data type, a contiguous float32 tensor in PyTorch's order
// (NCHW for images, (N, features) after flatten). Leaves out other dtypes and arbitrary strides:
// every tensor the engine makes is contiguous, which keeps every kernel a plain loop over memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace prism {

// Where a tensor's memory lives. A cuda tensor's data() is a device pointer: only CUDA kernels
// and the copies in engine/cuda/runtime.hpp may touch it.
enum class Device { cpu, cuda };

const char* device_name(Device device);  // "cpu", "cuda"


using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "(2, 64, 112, 112)"

// A borrowed tensor: a pointer and a shape. It never owns or frees its memory.
struct TensorView {
  float* data = nullptr;
  Shape shape;

  int64_t numel() const { return shape_numel(shape); }
  int64_t dim(size_t i) const { return shape.at(i); }
};

// A borrowed read-only tensor; every TensorView converts to one.
struct ConstTensorView {
  const float* data = nullptr;
  Shape shape;

  ConstTensorView() = default;
  ConstTensorView(const float* data_, Shape shape_) : data(data_), shape(std::move(shape_)) {}
  ConstTensorView(const TensorView& view) : data(view.data), shape(view.shape) {}  // NOLINT
  int64_t numel() const { return shape_numel(shape); }
  int64_t dim(size_t i) const { return shape.at(i); }
};

// Frees a tensor's storage the way it was allocated.
struct TensorStorageDeleter {
  Device device = Device::cpu;
  size_t mapped_bytes = 0;  // cpu: a mapping of its own (large tensors), else from malloc
  bool reusable = false;    // a transient mapping: kept for the next one that fits (tensor.cpp)
  void operator()(float* p) const;
};

// How long a tensor's memory is kept, which decides where a large one comes from (tensor.cpp):
// `lasting` for what lives as long as a model or a plan (weights, packed weights, activation
// buffers), `transient` for the rest (results, captures, PRISM's matrices).
enum class Lifetime { transient, lasting };

// Transient CPU tensors smaller than this come from malloc; the command line sets glibc's mmap
// threshold to it (its largest), so that malloc serves them from a heap it keeps and reuses.
inline constexpr size_t malloc_tensor_bytes_below = size_t{32} << 20;

// An owning tensor: 64-byte aligned storage (one AVX-512 register, one cache line), zero-filled
// at creation unless made `uninitialized`, moved rather than copied (clone() and to() make copies
// explicit). Large ones get a mapping of their own on 2 MiB pages where the kernel allows it (see
// tensor.cpp). On Device::cuda the storage is GPU memory (cudaMalloc), freed the same way when
// the tensor goes.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, Lifetime lifetime = Lifetime::transient);
  // For memory about to be overwritten in full (file reads, copies, packing): skips the zero fill.
  static Tensor uninitialized(Shape shape, Device device = Device::cpu, Lifetime lifetime = Lifetime::transient);

  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(Tensor&&) noexcept = default;
  Tensor(const Tensor&) = delete;
  Tensor& operator=(const Tensor&) = delete;

  static Tensor from_data(Shape shape, const float* values);  // copies numel values from host memory
  Tensor clone() const;                                       // on the same device
  Tensor to(Device device) const;                             // a copy on that device

  Device device() const { return storage_.get_deleter().device; }
  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  int64_t numel() const { return shape_numel(shape_); }
  bool empty() const { return storage_ == nullptr; }

  float* data() { return storage_.get(); }
  const float* data() const { return storage_.get(); }
  TensorView view() { return {storage_.get(), shape_}; }
  ConstTensorView view() const { return {storage_.get(), shape_}; }

  // Same memory, another shape with the same number of elements (torch.reshape on a contiguous
  // tensor).
  void reshape(Shape shape);

 private:
  Tensor(Shape shape, bool zero_fill, Lifetime lifetime);
  Shape shape_;
  std::unique_ptr<float[], TensorStorageDeleter> storage_;
};

// (N, C, H, W) -> (N, H, W, C): the channels-last copy that image files and NumPy users expect.
Tensor nchw_to_nhwc(ConstTensorView tensor);

// (N, C, H, W) -> (N, 1, H, W): each pixel's mean over channels, summed in double. All PRISM
// keeps of an earlier capture, so memory per image is one plane per capture, not the activation.
Tensor channel_mean(ConstTensorView activations);

// The same for `count` pixels of one image: channel c's values from planes + c * plane_stride on,
// their means into means. channel_mean's arithmetic exactly, for a step that writes the means of
// its own output while it is in cache (the CPU convolution's GEMM path).
void channel_mean_of_pixels(const float* planes, int64_t channels, int64_t plane_stride, int64_t count, float* means);

// The same on the GPU (engine/cuda/channel_mean.cu): both views in device memory, means shaped
// (N, 1, H, W), queued on the context's stream.
class CudaContext;
void channel_mean_cuda(ConstTensorView activations, TensorView means, const CudaContext& context);

}  // namespace prism
