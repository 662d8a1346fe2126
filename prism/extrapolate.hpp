// prism/extrapolate.hpp: gradual extrapolation (Szandała): the maps of the analysed capture are
// carried back to the image step by step, through each earlier capture, by bilinear upsampling
// and multiplication with that capture's mean over channels (channel_mean, engine/tensor.hpp).
#pragma once

#include <vector>

#include "engine/tensor.hpp"

namespace prism {

// torch.nn.functional.interpolate(maps, size=(height, width), mode="bilinear",
// align_corners=False) on (N, K, H, W): source coordinate (x + 0.5) * in / out - 0.5, clamped at
// 0, between the two nearest pixels (the last one repeated at the edge).
Tensor resize_bilinear(ConstTensorView maps, int64_t height, int64_t width);

// For each channel mean, last to first: maps = resize_bilinear(maps, its size) * mean.
// `channel_means` are in forward order, each (N, 1, H_i, W_i).
Tensor gradual_extrapolation(ConstTensorView maps, const std::vector<Tensor>& channel_means);

}  // namespace prism
