// tools/report/report.hpp: the files `prism run` writes (maps.npy, PNG maps, grid.png,
// variance.svg), built in memory and then written under a temporary name and renamed, so an
// interrupted or failed run never leaves a half-written file behind.
#pragma once

#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "tools/image/image.hpp"

namespace prism {

// Writes `bytes` to path + ".partial", then renames it to `path`. Throws naming the path.
void write_file_atomically(const std::string& path, const std::string& bytes);

// NumPy's .npy format, version 1.0: a float32 little-endian array of `shape`, C order.
std::string npy_bytes(const float* values, const Shape& shape);

// A PNG of an RGB image (stb_image_write).
std::string png_bytes(const Image& image);

// (N, 3, H, W) colours in [0, 1] -> the n-th image as 8-bit RGB (rounded).
Image colours_to_image(const Tensor& maps, int64_t n);

// One channel (0 red, 1 green, 2 blue) of the n-th map as a tinted picture: white where the
// component is 0, the full colour where it is 1 (like matplotlib's Reds, Greens, Blues).
Image channel_to_image(const Tensor& maps, int64_t n, int channel);

// A picture of pictures: rows of equally sized images with a white margin between them.
Image grid(const std::vector<std::vector<Image>>& rows, int64_t margin = 8);

// A bar chart of each component's explained variance ratio, the first three written on it.
std::string variance_svg(const std::vector<double>& ratios, const std::string& title);

}  // namespace prism
