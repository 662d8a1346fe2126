// tools/image/read_image.cpp: decoding image files: JPEG with libjpeg-turbo (read_jpeg.cpp), every
// other format with stb_image (Debian's header, compiled in tools/image/stb_image_impl.cpp).
#include <stb_image.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/error.hpp"
#include "tools/image/decoders.hpp"

namespace prism {

namespace {

// Debian 12's stb_image reads a binary PNM's width, height and maximum value into an int with no
// check, and a long run of digits overflows it (undefined behaviour, found by
// tests/fuzz/fuzz_image). So the three numbers are read here first as stb reads them (whitespace
// and # comments skipped between them) and refused before they pass what an int holds.
void check_pnm_header(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 2 || data[0] != 'P' || (data[1] != '5' && data[1] != '6')) return;  // not a PNM to stb
  size_t at = 2;
  auto at_end = [&] { return at >= size; };
  auto next = [&]() -> char { return at < size ? static_cast<char>(data[at++]) : '\0'; };
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; };
  char c = next();
  for (int number = 0; number < 3; ++number) {
    for (;;) {
      while (!at_end() && space(c)) c = next();
      if (at_end() || c != '#') break;
      while (!at_end() && c != '\n' && c != '\r') c = next();
    }
    int64_t value = 0;
    while (!at_end() && c >= '0' && c <= '9') {
      value = value * 10 + (c - '0');
      if (value > INT32_MAX) throw Error(name + ": cannot read the image (a number in its PNM header is too large)");
      c = next();
    }
  }
}

}  // namespace

void check_pixel_count(const std::string& name, int64_t width, int64_t height, int64_t max_pixels) {
  if (width * height <= max_pixels) return;
  throw Error(name + ": " + std::to_string(width) + "x" + std::to_string(height) + " pixels, more than the limit of " +
              std::to_string(max_pixels) + " (a decompression bomb?); raise --max-image-pixels if the image is real");
}

Image read_image_bytes(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  if (size == 0) throw Error(name + ": an empty file, not an image");
  if (size > static_cast<size_t>(INT32_MAX)) throw Error(name + ": larger than 2 GiB, too large for an image file");
  const int length = static_cast<int>(size);
  auto unreadable = [&](const char* reason) {
    return Error(name + ": cannot read the image (" + (reason ? reason : "unknown reason") +
                 "); supported: JPEG, PNG, BMP, GIF, TGA, PNM");
  };
  if (is_jpeg(data, size)) return read_jpeg_bytes(data, size, name, max_pixels);
  // The header first: a file may claim 100000 x 100000 pixels in a few bytes.
  int width = 0, height = 0, channels = 0;
  check_pnm_header(data, size, name);
  if (!stbi_info_from_memory(data, length, &width, &height, &channels)) throw unreadable(stbi_failure_reason());
  if (width <= 0 || height <= 0) throw Error(name + ": an image without pixels");
  check_pixel_count(name, width, height, max_pixels);
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load_from_memory(data, length, &width, &height, &channels, 3),
                                                   stbi_image_free);
  if (!pixels) throw unreadable(stbi_failure_reason());
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.assign(pixels.get(), pixels.get() + static_cast<size_t>(width) * height * 3);
  return image;
}

Image read_image(const std::string& path, int64_t max_pixels) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw Error(path + ": no such file");
  if (std::filesystem::is_directory(path, error)) throw Error(path + ": a folder, not an image file");
  std::ifstream file(path, std::ios::binary);
  if (!file) throw Error(path + ": cannot open the file (" + std::strerror(errno) + ")");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) throw Error(path + ": cannot read the file (" + std::strerror(errno) + ")");
  return read_image_bytes(bytes.data(), bytes.size(), path, max_pixels);
}

}  // namespace prism
