// layers/cpu/max_pool2d.cpp: max pooling parallel over (image, channel) planes and vectorised
// along each output row: for every kernel tap, one pass over the row's outputs whose window
// sees that tap inside the image (worked out once per call), so the inner loop is a plain
// strided max the compiler turns into SIMD code.
#include <algorithm>
#include <limits>
#include <vector>

#include "layers/max_pool2d.hpp"

namespace prism {
namespace {

// For one axis and each kernel tap k: the output indices [first, last) whose input index
// o * stride - padding + k * dilation lies inside [0, size).
struct ValidOutputs {
  std::vector<int64_t> first, last;
};

ValidOutputs valid_outputs(int64_t out_size, int64_t in_size, int64_t kernel, int64_t stride, int64_t padding,
                           int64_t dilation) {
  ValidOutputs valid;
  for (int64_t k = 0; k < kernel; ++k) {
    int64_t first = 0, last = out_size;
    while (first < out_size && first * stride - padding + k * dilation < 0) ++first;
    while (last > first && (last - 1) * stride - padding + k * dilation >= in_size) --last;
    valid.first.push_back(first);
    valid.last.push_back(last);
  }
  return valid;
}

// max that propagates NaN, as PyTorch's pooling does.
inline float nan_max(float best, float value) {
  return (value > best || value != value) ? value : best;
}

}  // namespace

void max_pool2d_forward_cpu(const MaxPool2dParams& p, ConstTensorView input, TensorView output) {
  const int64_t planes = input.dim(0) * input.dim(1), height = input.dim(2), width = input.dim(3);
  const int64_t out_h = output.dim(2), out_w = output.dim(3);
  const ValidOutputs rows = valid_outputs(out_h, height, p.kernel_h, p.stride_h, p.padding_h, p.dilation_h);
  const ValidOutputs columns = valid_outputs(out_w, width, p.kernel_w, p.stride_w, p.padding_w, p.dilation_w);
  const int64_t stride = p.stride_w;
#pragma omp parallel for schedule(static)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* in = input.data + plane * height * width;
    float* out = output.data + plane * out_h * out_w;
    for (int64_t oy = 0; oy < out_h; ++oy) {
      float* best = out + oy * out_w;
      std::fill(best, best + out_w, -std::numeric_limits<float>::infinity());
      for (int64_t ky = 0; ky < p.kernel_h; ++ky) {
        if (oy < rows.first[ky] || oy >= rows.last[ky]) continue;  // this kernel row is in the padding
        const float* row = in + (oy * p.stride_h - p.padding_h + ky * p.dilation_h) * width;
        for (int64_t kx = 0; kx < p.kernel_w; ++kx) {
          // Input column of output ox: ox * stride + shift.
          const float* source = row - p.padding_w + kx * p.dilation_w;
          for (int64_t ox = columns.first[kx]; ox < columns.last[kx]; ++ox) {
            best[ox] = nan_max(best[ox], source[ox * stride]);
          }
        }
      }
    }
  }
}

}  // namespace prism
