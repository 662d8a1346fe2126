// engine/tensor.cpp: aligned allocation and shape helpers for Tensor.
#include "engine/tensor.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
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

namespace {

// Transient mappings (tensors from 32 MiB: PRISM's maps of 64 images, 38.5 MB, made afresh at
// every call) are not given back when freed but kept here, a few at a time, for the next
// transient tensor that fits: fresh memory costs the kernel a fault and a cleared page for every
// 4 KiB (about 10 ms for those maps on the Xeon of bench/), memory kept costs nothing. The same
// reuse malloc gives smaller tensors, which glibc stops at 32 MiB. A process holds at most
// `kept_mapping_bytes` this way beyond what it uses.
constexpr size_t kept_mapping_bytes = size_t{256} << 20;
constexpr size_t kept_mappings = 4;

class KeptMappings {
 public:
  // A kept mapping of at least `bytes` and at most twice that (the smallest such), or nullptr.
  float* take(size_t bytes, size_t& mapped_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto best = kept_.end();
    for (auto it = kept_.begin(); it != kept_.end(); ++it) {
      if (it->bytes >= bytes && it->bytes <= 2 * bytes && (best == kept_.end() || it->bytes < best->bytes)) best = it;
    }
    if (best == kept_.end()) return nullptr;
    float* memory = best->memory;
    mapped_bytes = best->bytes;
    total_ -= best->bytes;
    kept_.erase(best);
    return memory;
  }

  // Keeps a freed mapping, giving back the oldest kept ones beyond the limits.
  void give(float* memory, size_t bytes) {
    std::vector<Mapping> released;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      kept_.push_back({memory, bytes});
      total_ += bytes;
      while (kept_.size() > kept_mappings || total_ > kept_mapping_bytes) {
        released.push_back(kept_.front());
        total_ -= kept_.front().bytes;
        kept_.erase(kept_.begin());
      }
    }
    for (const Mapping& mapping : released) munmap(mapping.memory, mapping.bytes);
  }

 private:
  struct Mapping {
    float* memory;
    size_t bytes;
  };
  std::mutex mutex_;
  std::vector<Mapping> kept_;  // oldest first
  size_t total_ = 0;
};

KeptMappings& kept_mappings_of_process() {
  static KeptMappings* kept = new KeptMappings;  // never destroyed: a static tensor may return to it at exit
  return *kept;
}

}  // namespace

void TensorStorageDeleter::operator()(float* p) const {
  if (device == Device::cuda) {
    cuda_free(p);
  } else if (mapped_bytes > 0 && reusable) {
    kept_mappings_of_process().give(p, mapped_bytes);
  } else if (mapped_bytes > 0) {
    munmap(p, mapped_bytes);
  } else {
    std::free(p);
  }
}

namespace {

constexpr size_t huge_page = size_t{2} << 20;

// Under AddressSanitizer every tensor comes from malloc, whose blocks it guards.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool address_sanitizer = true;
#else
constexpr bool address_sanitizer = false;
#endif

// Where a CPU tensor's memory comes from. On the AMD virtual machine of earlier measurements a page
// fault cost about 16 us, so fresh memory on 4 KiB pages cost 4 ms per MB, on 2 MiB pages 0.06 ms;
// on the Xeon one of bench/ a 38 MB mapping faulted in takes 14-16 ms on 4 KiB pages and 4 ms on
// 2 MiB pages, but see below for the latter inside a busy process. Memory that malloc reuses costs
// nothing. So:
// - lasting tensors from 4 MiB get a mapping of their own on 2 MiB pages: weights and activation
//   buffers are touched once with a few hundred faults instead of a hundred thousand, and walked
//   with fewer TLB misses (ResNet-50's load 1.2 -> 0.5 s, plan 1.0 -> 0.4 s; forward passes 2-4%
//   faster than from malloc);
// - transient ones come from malloc, which keeps what they free for the next (tools/prism/main.cpp
//   stops it giving memory back), up to glibc's mmap threshold, 32 MiB; beyond it (PRISM's maps of
//   64 images at 224x224, 38.5 MB) a mapping of their own on 4 KiB pages, kept when freed for the
//   next such tensor (KeptMappings above). On 2 MiB pages that
//   mapping took 45-48 ms to fault in at every PRISM call of `prism bench` on the Xeon machine of
//   bench/ (the kernel clearing each huge page at 1.4 GB/s: fresh host memory, it seems) against
//   about 10 on 4 KiB pages (all of PRISM at batch 64: 143-145 -> 107-110 ms, and 161-169 -> 125-130
//   in a new process).
// Not glibc's aligned_alloc(2 MiB) for either: its aligned blocks split the heap so that freed
// memory was not reused, and every PRISM call faulted its buffers in afresh (ResNet-50 at batch
// 8: PRISM 12-24 ms against 8; vgg16's forward pass at batch 8 about 10% slower).
constexpr size_t lasting_mapped_from = 2 * huge_page;
constexpr size_t transient_mapped_from = malloc_tensor_bytes_below;

// `bytes` (a multiple of huge_page) of zeroed memory in a mapping of its own, starting on a
// 2 MiB boundary, advised onto 2 MiB pages if `huge_pages`; nullptr if the system has none to give.
float* map_pages(size_t bytes, bool huge_pages) {
  const size_t padded = bytes + huge_page;  // room to slide to a 2 MiB boundary
  void* raw = mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + huge_page - 1) / huge_page * huge_page;
  if (aligned > start) munmap(raw, aligned - start);  // give back the slack on both sides
  const uintptr_t tail = aligned + bytes, end = start + padded;
  if (end > tail) munmap(reinterpret_cast<void*>(tail), end - tail);
  if (huge_pages) madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // a hint: refused is fine
  return reinterpret_cast<float*>(aligned);
}

}  // namespace

Tensor::Tensor(Shape shape, Lifetime lifetime) : Tensor(std::move(shape), true, lifetime) {}

Tensor Tensor::uninitialized(Shape shape, Device device, Lifetime lifetime) {
  if (device == Device::cpu) return Tensor(std::move(shape), false, lifetime);
  Tensor tensor;
  tensor.shape_ = std::move(shape);
  for (int64_t d : tensor.shape_) {
    if (d < 0) throw Error("negative tensor dimension in shape " + shape_to_string(tensor.shape_));
  }
  tensor.storage_ = std::unique_ptr<float[], TensorStorageDeleter>(cuda_allocate(tensor.numel()),
                                                                   TensorStorageDeleter{Device::cuda});
  return tensor;
}

Tensor::Tensor(Shape shape, bool zero_fill, Lifetime lifetime) : shape_(std::move(shape)) {
  for (int64_t d : shape_) {
    if (d < 0) throw Error("negative tensor dimension in shape " + shape_to_string(shape_));
  }
  size_t bytes = static_cast<size_t>(numel()) * sizeof(float);
  auto out_of_memory = [&] {
    return Error("out of memory allocating a tensor of shape " + shape_to_string(shape_) + " (" +
                 std::to_string(bytes >> 20) + " MiB)");
  };
  const size_t mapped_from = lifetime == Lifetime::lasting ? lasting_mapped_from : transient_mapped_from;
  if (bytes >= mapped_from && !address_sanitizer) {
    const bool transient = lifetime == Lifetime::transient;
    const size_t rounded = (bytes + huge_page - 1) / huge_page * huge_page;
    size_t mapped = rounded;
    float* memory = transient ? kept_mappings_of_process().take(rounded, mapped) : nullptr;
    if (memory != nullptr) {
      if (zero_fill) std::memset(memory, 0, bytes);  // a kept mapping holds what its last tensor left
    } else {
      memory = map_pages(rounded, !transient);  // zeroed by the kernel: no fill needed
    }
    if (memory == nullptr) throw out_of_memory();
    storage_ =
        std::unique_ptr<float[], TensorStorageDeleter>(memory, TensorStorageDeleter{Device::cpu, mapped, transient});
    return;
  }
  constexpr size_t alignment = 64;
  bytes = std::max(alignment, (bytes + alignment - 1) / alignment * alignment);  // aligned_alloc wants a multiple
  void* memory = std::aligned_alloc(alignment, bytes);
  if (memory == nullptr) throw out_of_memory();
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

namespace {
constexpr int64_t channel_mean_run = 1024;  // pixels summed at once: their sums stay in L1
}  // namespace

void channel_mean_of_pixels(const float* planes, int64_t channels, int64_t plane_stride, int64_t count, float* means) {
  for (int64_t first = 0; first < count; first += channel_mean_run) {
    const int64_t length = std::min(channel_mean_run, count - first);
    double sum[channel_mean_run] = {};
    // Each pixel's channels added in order, four planes a pass along the run: a sum loaded and
    // stored once for four channels rather than for each.
    int64_t c = 0;
    for (; c + 4 <= channels; c += 4) {
      const float* __restrict a = planes + c * plane_stride + first;
      const float* __restrict b = a + plane_stride;
      const float* __restrict d = b + plane_stride;
      const float* __restrict e = d + plane_stride;
      for (int64_t p = 0; p < length; ++p) sum[p] = sum[p] + a[p] + b[p] + d[p] + e[p];
    }
    for (; c < channels; ++c) {
      const float* source = planes + c * plane_stride + first;
      for (int64_t p = 0; p < length; ++p) sum[p] += source[p];
    }
    for (int64_t p = 0; p < length; ++p) means[first + p] = static_cast<float>(sum[p] / channels);
  }
}

Tensor channel_mean(ConstTensorView activations) {
  const int64_t batch = activations.dim(0), channels = activations.dim(1);
  const int64_t plane = activations.dim(2) * activations.dim(3);
  Tensor mean = Tensor::uninitialized({batch, 1, activations.dim(2), activations.dim(3)});
  // Tasks of (image, a run of pixels), each pixel summed over the channels in order, in double:
  // the same result on any number of threads. On one thread, ResNet-50's four means at batch 8
  // (70 MB of activations read) took 4-5 ms of the forward pass outside any step.
  // A task a run of channel_mean_of_pixels (whose sums stay in L1), so that batch 1 is shared out.
  constexpr int64_t run = channel_mean_run;
  const int64_t runs = (plane + run - 1) / run;
#pragma omp parallel for schedule(static) if (batch * channels * plane >= (int64_t{1} << 16))
  for (int64_t task = 0; task < batch * runs; ++task) {
    const int64_t n = task / runs, first = task % runs * run;
    channel_mean_of_pixels(activations.data + n * channels * plane + first, channels, plane,
                           std::min(run, plane - first), mean.data() + n * plane + first);
  }
  return mean;
}

}  // namespace prism
