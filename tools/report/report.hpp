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

// Each pixel repeated factor x factor times: small inputs (Fashion-MNIST's) stay legible in a grid.
Image upscale_nearest(const Image& image, int64_t factor);

// A picture of pictures: rows of equally sized images with a white margin between them, a
// banner line on top (red; empty for none) and a few caption lines above each column, like
// TorchPRISM's figure with each image's top classes over it.
Image grid(const std::vector<std::vector<Image>>& rows, const std::vector<std::vector<std::string>>& column_captions,
           const std::string& banner);

// Draws text with stb_easy_font (a tiny font of axis-aligned bars) with its top left at (x, y),
// each font unit `scale` pixels; characters outside the image are clipped.
void draw_text(Image& image, int64_t x, int64_t y, const std::string& text, int scale, const uint8_t colour[3]);

// A bar chart of each component's explained variance ratio, the first three written on it.
std::string variance_svg(const std::vector<double>& ratios, const std::string& title);

}  // namespace prism
