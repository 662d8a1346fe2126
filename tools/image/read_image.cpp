// tools/image/read_image.cpp: decoding image files with stb_image (Debian's libstb).
#include <stb_image.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/error.hpp"
#include "tools/image/image.hpp"

namespace prism {

Image read_image_bytes(const uint8_t* data, size_t size, const std::string& name, int64_t max_pixels) {
  if (size == 0) throw Error(name + ": an empty file, not an image");
  if (size > static_cast<size_t>(INT32_MAX)) throw Error(name + ": larger than 2 GiB, too large for an image file");
  const int length = static_cast<int>(size);
  auto unreadable = [&](const char* reason) {
    return Error(name + ": cannot read the image (" + (reason ? reason : "unknown reason") +
                 "); supported: JPEG, PNG, BMP, GIF, TGA, PNM");
  };
  // The header first: a file may claim 100000 x 100000 pixels in a few bytes.
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(data, length, &width, &height, &channels)) throw unreadable(stbi_failure_reason());
  if (width <= 0 || height <= 0) throw Error(name + ": an image without pixels");
  if (static_cast<int64_t>(width) * height > max_pixels) {
    throw Error(name + ": " + std::to_string(width) + "x" + std::to_string(height) + " pixels, more than the limit of " +
                std::to_string(max_pixels) + " (a decompression bomb?); raise --max-image-pixels if the image is real");
  }
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
