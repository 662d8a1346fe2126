// engine/tensor.cpp: aligned allocation and shape helpers for Tensor.
#include "engine/tensor.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"

namespace prism {

int64_t shape_numel(const Shape& shape) {
  constexpr int64_t largest = int64_t{1} << 50;  // 4 PiB of floats: anything beyond is a broken shape
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d > 0 && n > largest / d) throw Error("tensor shape " + shape_to_string(shape) + " is impossibly large");
    n *= d;
  }
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string text = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + ")";
}

const char* device_name(Device device) { return device == Device::cuda ? "cuda" : "cpu"; }

void TensorStorageDeleter::operator()(float* p) const {
  if (device == Device::cuda) {
    cuda_free(p);
  } else {
    std::free(p);
  }
}

Tensor::Tensor(Shape shape) : Tensor(std::move(shape), true) {}

Tensor Tensor::uninitialized(Shape shape, Device device) {
  if (device == Device::cpu) return Tensor(std::move(shape), false);
  Tensor tensor;
  tensor.shape_ = std::move(shape);
  for (int64_t d : tensor.shape_) {
    if (d < 0) throw Error("negative tensor dimension in shape " + shape_to_string(tensor.shape_));
  }
  tensor.storage_ = std::unique_ptr<float[], TensorStorageDeleter>(cuda_allocate(tensor.numel()),
                                                                   TensorStorageDeleter{Device::cuda});
  return tensor;
}

Tensor::Tensor(Shape shape, bool zero_fill) : shape_(std::move(shape)) {
  for (int64_t d : shape_) {
    if (d < 0) throw Error("negative tensor dimension in shape " + shape_to_string(shape_));
  }
  constexpr size_t huge_page = size_t{2} << 20;
  size_t bytes = static_cast<size_t>(numel()) * sizeof(float);
  const size_t alignment = bytes >= 2 * huge_page ? huge_page : 64;
  bytes = (bytes + alignment - 1) / alignment * alignment;  // aligned_alloc wants a multiple
  if (bytes == 0) bytes = alignment;
  void* memory = std::aligned_alloc(alignment, bytes);
  if (memory == nullptr) {
    throw Error("out of memory allocating a tensor of shape " + shape_to_string(shape_) + " (" +
                std::to_string(bytes >> 20) + " MiB)");
  }
  if (alignment == huge_page) madvise(memory, bytes, MADV_HUGEPAGE);  // a hint: refused is fine
  if (zero_fill) std::memset(memory, 0, bytes);
  storage_.reset(static_cast<float*>(memory));
}

Tensor Tensor::from_data(Shape shape, const float* values) {
  Tensor tensor = uninitialized(std::move(shape));
  std::memcpy(tensor.data(), values, static_cast<size_t>(tensor.numel()) * sizeof(float));
  return tensor;
}

Tensor Tensor::clone() const {
  if (empty()) return Tensor();
  return device() == Device::cpu ? from_data(shape_, data()) : to(Device::cuda);
}

Tensor Tensor::to(Device target) const {
  if (empty()) return Tensor();
  Tensor copy = uninitialized(shape_, target);
  if (device() == Device::cpu && target == Device::cpu) {
    std::memcpy(copy.data(), data(), static_cast<size_t>(numel()) * sizeof(float));
  } else if (device() == Device::cpu) {
    cuda_upload(copy.data(), data(), numel());
  } else if (target == Device::cpu) {
    cuda_download(copy.data(), data(), numel());
  } else {
    cuda_copy(copy.data(), data(), numel());
  }
  return copy;
}

void Tensor::reshape(Shape shape) {
  if (shape_numel(shape) != numel()) {
    throw Error("cannot reshape " + shape_to_string(shape_) + " to " + shape_to_string(shape));
  }
  shape_ = std::move(shape);
}

Tensor nchw_to_nhwc(ConstTensorView tensor) {
  if (tensor.shape.size() != 4) throw Error("nchw_to_nhwc needs a 4-D tensor, got " + shape_to_string(tensor.shape));
  const int64_t n = tensor.dim(0), channels = tensor.dim(1), plane = tensor.dim(2) * tensor.dim(3);
  Tensor out({n, tensor.dim(2), tensor.dim(3), channels});
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t p = 0; p < plane; ++p)
        out.data()[(i * plane + p) * channels + c] = tensor.data[(i * channels + c) * plane + p];
    }
  }
  return out;
}

Tensor channel_mean(ConstTensorView activations) {
  const int64_t batch = activations.dim(0), channels = activations.dim(1);
  const int64_t plane = activations.dim(2) * activations.dim(3);
  Tensor mean({batch, 1, activations.dim(2), activations.dim(3)});
  std::vector<double> sum(plane);
  for (int64_t n = 0; n < batch; ++n) {
    std::fill(sum.begin(), sum.end(), 0.0);
    for (int64_t c = 0; c < channels; ++c) {
      const float* source = activations.data + (n * channels + c) * plane;
      for (int64_t p = 0; p < plane; ++p) sum[p] += source[p];
    }
    for (int64_t p = 0; p < plane; ++p) mean.data()[n * plane + p] = static_cast<float>(sum[p] / channels);
  }
  return mean;
}

}  // namespace prism
