// prism/extrapolate.cpp: PyTorch's bilinear interpolation, gradual extrapolation.
#include "prism/extrapolate.hpp"

#include <algorithm>

#include "engine/error.hpp"

namespace prism {

namespace {

// For one axis: the two source indices and their weights for each output index, in float as
// PyTorch's CPU kernel computes them.
struct Interpolation {
  std::vector<int64_t> low, high;
  std::vector<float> low_weight, high_weight;
};

Interpolation interpolation(int64_t in, int64_t out) {
  Interpolation a;
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t i = 0; i < out; ++i) {
    const float source = std::max(scale * (static_cast<float>(i) + 0.5f) - 0.5f, 0.0f);
    const int64_t low = std::min(static_cast<int64_t>(source), in - 1);
    const float fraction = source - static_cast<float>(low);
    a.low.push_back(low);
    a.high.push_back(low < in - 1 ? low + 1 : low);
    a.high_weight.push_back(fraction);
    a.low_weight.push_back(1.0f - fraction);
  }
  return a;
}

}  // namespace

Tensor resize_bilinear(ConstTensorView maps, int64_t height, int64_t width) {
  const int64_t planes = maps.dim(0) * maps.dim(1), in_h = maps.dim(2), in_w = maps.dim(3);
  const Interpolation rows = interpolation(in_h, height), columns = interpolation(in_w, width);
  Tensor out = Tensor::uninitialized({maps.dim(0), maps.dim(1), height, width});
  // Separably: each input row is first interpolated along x (a plane's in_h rows of `width`),
  // then each output row is a weighted sum of two of those, a loop the compiler vectorises. The
  // same products and sums as PyTorch's w_y0 (w_x0 a + w_x1 b) + w_y1 (w_x0 c + w_x1 d); done
  // pixel by pixel, gathering four inputs through index tables for every output, the final resize
  // of 64 images' maps to 224x224 took twice as long.
#pragma omp parallel
  {
    std::vector<float> widened(in_h * width);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const float* in = maps.data + plane * in_h * in_w;
      for (int64_t y = 0; y < in_h; ++y) {
        const float* row = in + y * in_w;
        float* target = widened.data() + y * width;
        for (int64_t x = 0; x < width; ++x) {
          target[x] = columns.low_weight[x] * row[columns.low[x]] + columns.high_weight[x] * row[columns.high[x]];
        }
      }
      float* target = out.data() + plane * height * width;
      for (int64_t y = 0; y < height; ++y) {
        const float* __restrict top = widened.data() + rows.low[y] * width;
        const float* __restrict bottom = widened.data() + rows.high[y] * width;
        const float w0 = rows.low_weight[y], w1 = rows.high_weight[y];
        float* __restrict row = target + y * width;
        for (int64_t x = 0; x < width; ++x) row[x] = w0 * top[x] + w1 * bottom[x];
      }
    }
  }
  return out;
}

Tensor gradual_extrapolation(ConstTensorView maps, const std::vector<Tensor>& channel_means) {
  Tensor current = Tensor::from_data(maps.shape, maps.data);
  for (auto mean = channel_means.rbegin(); mean != channel_means.rend(); ++mean) {
    if (mean->dim(0) != maps.dim(0) || mean->dim(1) != 1) {
      throw Error("channel mean " + shape_to_string(mean->shape()) + " does not fit maps " +
                  shape_to_string(maps.shape));
    }
    current = resize_bilinear(current.view(), mean->dim(2), mean->dim(3));
    const int64_t components = current.dim(1), plane = current.dim(2) * current.dim(3);
#pragma omp parallel for schedule(static)
    for (int64_t map = 0; map < current.dim(0) * components; ++map) {
      const float* factor = mean->data() + map / components * plane;
      float* target = current.data() + map * plane;
      for (int64_t p = 0; p < plane; ++p) target[p] *= factor[p];
    }
  }
  return current;
}

}  // namespace prism
