// tools/image/read_image.cpp: decoding image files with stb_image (Debian's header, compiled in
// tools/image/stb_image_impl.cpp).
#include <stb_image.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "engine/error.hpp"
#include "tools/image/image.hpp"

namespace prism {

namespace {

// Debian 12's stb_image writes past a 257-entry array when a JPEG Huffman table declares more
// than 256 codes (found by tests/fuzz/fuzz_image; stb_image 2.28 refuses such tables itself). So
// every table stb could read is checked before stb sees the file. Wherever stb meets a DHT
// segment, in the headers, between scans or after garbage it skips, the file holds the bytes
// FF C4 there (entropy-coded data never does: an FF in it is followed by 00 or a marker), so each
// FF C4 in the file is read as stb would read a DHT segment (zeros past the end, as stb's reader
// gives) and refused if a table's 16 counts add up to more than 256. A table stb itself rejects
// (a bad class or id) ends that segment, as in stb. A valid JPEG has a few dozen DHT segments at
// most; more than 1000 FF C4 pairs is refused too, which bounds the work.
void check_jpeg_huffman_tables(const uint8_t* data, size_t size, const std::string& name) {
  if (size < 2 || data[0] != 0xFF) return;  // not a JPEG to stb (which skips FF fill before SOI, too)
  auto byte = [&](size_t at) -> int { return at < size ? data[at] : 0; };
  auto damaged = [&] { return Error(name + ": cannot read the image (a corrupt JPEG Huffman table)"); };
  int segments = 0;
  for (size_t marker = 0; marker + 1 < size; ++marker) {
    if (data[marker] != 0xFF || data[marker + 1] != 0xC4) continue;
    if (++segments > 1000) throw damaged();
    size_t at = marker + 2;
    int64_t left = (byte(at) << 8 | byte(at + 1)) - 2;  // stb's L
    at += 2;
    while (left > 0) {
      const int q = byte(at++);
      if (q >> 4 > 1 || (q & 15) > 3) break;  // stb stops here with an error of its own
      int64_t codes = 0;
      for (int i = 0; i < 16; ++i) codes += byte(at++);
      if (codes > 256) throw damaged();
      at += static_cast<size_t>(codes);
      left -= 17 + codes;
    }
  }
}

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
  check_pnm_header(data, size, name);
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
