// tools/image/image.hpp: reading images and turning them into the network's input exactly as
// TorchPRISM's loader does in PyTorch (PIL decode, transforms.Resize, ToTensor, Normalize).
// Leaves out colour management (ICC profiles) and EXIF rotation, as PIL's plain open() does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "engine/tensor.hpp"

namespace prism {

// 8-bit RGB pixels, interleaved, row by row: pixel (x, y) channel c is at (y * width + x) * 3 + c.
struct Image {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb;
};

// The largest image read_image decodes by default, in pixels: PIL's own decompression-bomb
// error threshold (2 x Image.MAX_IMAGE_PIXELS). A header may claim any size; decoding it would
// take width * height * 3 bytes.
constexpr int64_t default_max_image_pixels = 178956970;

// Decodes a JPEG (baseline, progressive, CMYK; with libjpeg-turbo, to PIL's pixels exactly), PNG
// (8 or 16 bits, grey, alpha), BMP, GIF (first frame), TGA or PNM file (with stb_image) into 8-bit
// RGB: grey is copied to all three channels, alpha is dropped (PIL's convert("RGB")). Throws an
// Error naming the file: missing, a folder, unreadable, empty, not an image, damaged or truncated,
// or larger than max_pixels (checked from the header, before anything is decoded).
Image read_image(const std::string& path, int64_t max_pixels = default_max_image_pixels);

// The same from bytes in memory (the fuzzing target); `name` stands for the file in messages.
Image read_image_bytes(const uint8_t* data, size_t size, const std::string& name,
                       int64_t max_pixels = default_max_image_pixels);

// PIL's Image.resize(size, Image.BILINEAR): a triangle filter widened by the scale factor when
// shrinking (antialiasing), applied horizontally then vertically in PIL's 8-bit fixed point,
// each pass skipped when that dimension keeps its size. Matches PIL to the grey level.
Image resize_bilinear_pil(const Image& image, int64_t width, int64_t height);

// Cuts the (width x height) window whose corner is at (left, top).
Image crop(const Image& image, int64_t left, int64_t top, int64_t width, int64_t height);

// How an image of any size becomes the model's input size.
enum class ResizeMode {
  stretch,      // transforms.Resize((H, W)): TorchPRISM's loader, the default
  center_crop,  // transforms.Resize(256) then CenterCrop(224): torchvision's evaluation transform
};

// PIL's convert("L") of an RGB image, kept as RGB with three equal channels.
Image to_grey(const Image& image);

// The resized image, before ToTensor: the exact pixels PyTorch's pipeline would see; grey first
// when the model was trained on grey images.
Image resize_for_model(const Image& image, const Preprocessing& preprocessing, ResizeMode mode);

// ToTensor and Normalize of already resized images into one batch (N, 3, H, W).
Tensor images_to_batch(const std::vector<Image>& images, const Preprocessing& preprocessing);

}  // namespace prism
