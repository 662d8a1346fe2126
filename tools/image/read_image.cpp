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

namespace {

// Debian 12's stb_image writes past a 257-entry array when a JPEG Huffman table declares more
// than 256 codes (found by tests/fuzz/fuzz_image; stb_image 2.28 refuses such tables itself).
// So every DHT segment is checked before stb sees the file: walk the markers, skipping each
// segment and each scan's entropy-coded data, and refuse a table whose 16 counts add up to more
// than 256 or that runs past its segment. The walk follows stb's own: bytes between segments
// that are not markers are skipped one by one.
void check_jpeg_huffman_tables(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) return;  // not a JPEG
  auto damaged = [&] { return Error(name + ": cannot read the image (a corrupt JPEG Huffman table)"); };
  size_t at = 2;
  while (at + 4 <= size) {
    if (data[at] != 0xFF) {  // between segments stb skips anything that is not a marker; so do we
      ++at;
      continue;
    }
    const uint8_t marker = data[at + 1];
    if (marker == 0xFF) {  // fill byte
      ++at;
      continue;
    }
    if (marker == 0xD9) return;                                                // EOI
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      at += 2;
      continue;
    }
    const size_t length = static_cast<size_t>(data[at + 2]) << 8 | data[at + 3];
    if (length < 2) return;
    if (at + 2 + length > size) {  // stb reads zeros past the end: a table there is no better
      if (marker == 0xC4) throw damaged();
      return;
    }
    if (marker == 0xC4) {  // DHT: tables of (class and id, 16 counts, the symbols)
      size_t table = at + 4;
      const size_t end = at + 2 + length;
      while (table < end) {
        if (table + 17 > end) throw damaged();
        size_t codes = 0;
        for (int i = 1; i <= 16; ++i) codes += data[table + i];
        if (codes > 256 || table + 17 + codes > end) throw damaged();
        table += 17 + codes;
      }
    }
    at += 2 + length;
    if (marker == 0xDA) {  // SOS: entropy-coded data up to the next marker other than a stuffed 0 or RST
      while (at + 1 < size && !(data[at] == 0xFF && data[at + 1] != 0x00 && !(data[at + 1] >= 0xD0 && data[at + 1] <= 0xD7))) {
        ++at;
      }
    }
  }
}

}  // namespace

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
  check_jpeg_huffman_tables(data, size, name);  // before stb reads any of it, its header included
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
