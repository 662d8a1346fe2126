// tools/image/idx.hpp: the IDX files of MNIST and Fashion-MNIST (gzip-compressed or not): a
// magic number naming the element type and rank, big-endian dimensions, then the bytes.
// Leaves out element types other than unsigned bytes, which is all these data sets use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/image/image.hpp"

namespace prism {

struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> values;
};

// Reads an IDX file of unsigned bytes; throws naming the file when it is not one or is cut short.
IdxArray read_idx(const std::string& path);

// Images [first, first + count) of an (N, H, W) array, as grey images (three equal channels).
std::vector<Image> idx_images(const IdxArray& images, int64_t first, int64_t count);

}  // namespace prism
