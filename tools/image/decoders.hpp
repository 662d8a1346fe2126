// tools/image/decoders.hpp: the decoders behind read_image_bytes (image.hpp), which picks one by
// the file's first bytes: libjpeg-turbo for JPEG (read_jpeg.cpp), stb_image for the rest
// (read_image.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "tools/image/image.hpp"

namespace prism {

// PIL's test for a JPEG: the start-of-image marker FF D8, then the FF of the next marker.
bool is_jpeg(const uint8_t* data, size_t size);

// A JPEG (baseline, progressive or arithmetic-coded; grey, YCbCr, RGB, CMYK or YCCK) to the RGB
// pixels PIL's convert("RGB") gives. Damaged data that loses pixels is an Error, not grey filler.
Image read_jpeg_bytes(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels);

// Throws the decompression-bomb Error when a header's width x height is more than max_pixels.
void check_pixel_count(const std::string& name, int64_t width, int64_t height, int64_t max_pixels);

}  // namespace prism
