// prism/cuda/colours.cu: TorchPRISM's normalisation and quantisation on the GPU. The statistics
// (sum, spread, extremes) are reduced per block in double and finished on the host from a few
// hundred partial results, so they are the CPU's up to the order of the additions.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "engine/cuda/check.cuh"
#include "prism/cuda/kernels.hpp"

namespace prism {
namespace {

constexpr unsigned reduction_blocks = 512;

struct Partial {
  double sum, low, high;
};

// Per block: the sum of (x - centre)^power (power 1 or 2) and the smallest and largest x.
__global__ void partial_statistics_kernel(const float* values, int64_t count, double centre, int power,
                                          Partial* partials) {
  __shared__ Partial shared[cuda_block_threads];
  Partial mine{0.0, DBL_MAX, -DBL_MAX};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const double x = values[i];
    mine.sum += power == 1 ? x - centre : (x - centre) * (x - centre);
    mine.low = fmin(mine.low, x);
    mine.high = fmax(mine.high, x);
  }
  shared[threadIdx.x] = mine;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      Partial& a = shared[threadIdx.x];
      const Partial& b = shared[threadIdx.x + half];
      a = {a.sum + b.sum, fmin(a.low, b.low), fmax(a.high, b.high)};
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) partials[blockIdx.x] = shared[0];
}

Partial statistics(const float* values, int64_t count, double centre, int power, const CudaContext& context) {
  DeviceBuffer partials(reduction_blocks * static_cast<int64_t>(sizeof(Partial)));
  partial_statistics_kernel<<<reduction_blocks, cuda_block_threads, 0, stream_of(context)>>>(
      values, count, centre, power, partials.as<Partial>());
  cuda_check_launch("colour statistics");
  std::vector<Partial> host(reduction_blocks);
  cuda_download_bytes(host.data(), partials.as<Partial>(), reduction_blocks * static_cast<int64_t>(sizeof(Partial)));
  Partial total{0.0, DBL_MAX, -DBL_MAX};
  for (const Partial& p : host) total = {total.sum + p.sum, std::min(total.low, p.low), std::max(total.high, p.high)};
  return total;
}

// z = clamp((x - mean) / std, -1, 1) as float, then (z - low) / (high - low), as the CPU does.
__global__ void normalise_kernel(const float* maps, int64_t count, double mean, double std, double low,
                                 double high, float* colours) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const float z = static_cast<float>(fmin(fmax((maps[i] - mean) / std, -1.0), 1.0));
    colours[i] = static_cast<float>((z - low) / (high - low));
  }
}

__global__ void fill_kernel(float* values, int64_t count, float value) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    values[i] = value;
  }
}

// Rounds each channel to 0, 0.5 or 1 and marks the pixel's colour code (27 of them) as present in
// its image.
__global__ void quantise_kernel(float* colours, int64_t batch, int64_t plane, unsigned* present) {
  const int64_t count = batch * plane;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / plane, p = i % plane;
    int code = 0;
    for (int c = 0; c < 3; ++c) {
      float& value = colours[(n * 3 + c) * plane + p];
      const int level = min(max(static_cast<int>(rintf(__fdiv_rn(value, 0.5f))), 0), 2);
      value = 0.5f * static_cast<float>(level);
      code = code * 3 + level;
    }
    atomicOr(&present[n], 1u << code);
  }
}

// Blacks out pixels whose colour is (keep_common) or is not (!keep_common) in every image.
__global__ void filter_kernel(float* colours, int64_t batch, int64_t plane, unsigned common, bool keep_common) {
  const int64_t count = batch * plane;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t n = i / plane, p = i % plane;
    int code = 0;
    for (int c = 0; c < 3; ++c) code = code * 3 + static_cast<int>(colours[(n * 3 + c) * plane + p] * 2.0f);
    const bool shared = (common >> code) & 1u;
    if (shared == keep_common) continue;
    for (int c = 0; c < 3; ++c) colours[(n * 3 + c) * plane + p] = 0.0f;
  }
}

}  // namespace

void normalise_to_colours_cuda(const float* maps, int64_t count, float* colours, const CudaContext& context) {
  auto black = [&] {
    fill_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(colours, count, 0.0f);
    cuda_check_launch("colours");
  };
  if (count < 2) return black();
  const Partial first = statistics(maps, count, 0.0, 1, context);
  const double mean = first.sum / count;
  const double spread = statistics(maps, count, mean, 2, context).sum;
  const double std = std::sqrt(spread / (count - 1));  // torch.std is unbiased
  if (!(std > 0.0) || !std::isfinite(std)) return black();
  // (x - mean) / std is monotonic in x, so the extremes of the clipped z are those of x's.
  const double low = std::clamp((first.low - mean) / std, -1.0, 1.0);
  const double high = std::clamp((first.high - mean) / std, -1.0, 1.0);
  if (!(high > low)) return black();
  normalise_kernel<<<cuda_blocks_for(count), cuda_block_threads, 0, stream_of(context)>>>(maps, count, mean, std,
                                                                                          low, high, colours);
  cuda_check_launch("colours");
}

void quantise_colours_cuda(const float* maps, int64_t batch, int64_t plane, ColourFilter filter, float* colours,
                           const CudaContext& context) {
  normalise_to_colours_cuda(maps, batch * 3 * plane, colours, context);
  DeviceBuffer present(batch * static_cast<int64_t>(sizeof(unsigned)));
  cuda_check(cudaMemsetAsync(present.as<unsigned>(), 0, batch * sizeof(unsigned), stream_of(context)),
             "quantisation");
  quantise_kernel<<<cuda_blocks_for(batch * plane), cuda_block_threads, 0, stream_of(context)>>>(colours, batch, plane,
                                                                                                 present.as<unsigned>());
  cuda_check_launch("quantisation");
  std::vector<unsigned> masks(batch);
  cuda_download_bytes(masks.data(), present.as<unsigned>(), batch * static_cast<int64_t>(sizeof(unsigned)));
  if (filter == ColourFilter::all) return;
  unsigned common = (1u << 27) - 1;
  for (unsigned mask : masks) common &= mask;
  filter_kernel<<<cuda_blocks_for(batch * plane), cuda_block_threads, 0, stream_of(context)>>>(colours, batch, plane,
                                                                                               common, filter == ColourFilter::common);
  cuda_check_launch("quantisation");
  context.synchronize();  // `present` goes when this returns
}

}  // namespace prism
