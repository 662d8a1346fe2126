// tools/image/idx.cpp: reading IDX files through zlib's gz interface, which reads plain files too.
#include "tools/image/idx.hpp"

#include <zlib.h>

#include <memory>

#include "engine/error.hpp"

namespace prism {

IdxArray read_idx(const std::string& path) {
  std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  if (!file) throw Error(path + ": cannot open the file");
  auto read_exactly = [&](void* target, size_t bytes) {
    size_t done = 0;
    while (done < bytes) {
      const int chunk = gzread(file.get(), static_cast<char*>(target) + done,
                               static_cast<unsigned>(std::min<size_t>(bytes - done, 1 << 30)));
      if (chunk <= 0) throw Error(path + ": the IDX file is truncated or corrupt");
      done += static_cast<size_t>(chunk);
    }
  };
  uint8_t magic[4];
  read_exactly(magic, 4);
  // Two zero bytes, the element type (0x08: unsigned byte) and the number of dimensions.
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] == 0 || magic[3] > 4) {
    throw Error(path + ": not an IDX file of unsigned bytes (MNIST / Fashion-MNIST format)");
  }
  IdxArray array;
  int64_t count = 1;
  for (int d = 0; d < magic[3]; ++d) {
    uint8_t bytes[4];
    read_exactly(bytes, 4);
    const int64_t size = (int64_t{bytes[0]} << 24) | (bytes[1] << 16) | (bytes[2] << 8) | bytes[3];
    if (size <= 0 || size > (int64_t{1} << 28))
      throw Error(path + ": implausible IDX dimension " + std::to_string(size));
    array.dims.push_back(size);
    count *= size;
  }
  if (count > (int64_t{1} << 31)) throw Error(path + ": the IDX file claims more than 2 GiB of data");
  array.values.resize(static_cast<size_t>(count));
  read_exactly(array.values.data(), array.values.size());
  return array;
}

std::vector<Image> idx_images(const IdxArray& images, int64_t first, int64_t count) {
  if (images.dims.size() != 3) throw Error("IDX images must have three dimensions (N, H, W)");
  const int64_t height = images.dims[1], width = images.dims[2];
  std::vector<Image> result;
  for (int64_t n = first; n < first + count && n < images.dims[0]; ++n) {
    Image image{width, height, std::vector<uint8_t>(height * width * 3)};
    for (int64_t p = 0; p < height * width; ++p) {
      const uint8_t value = images.values[n * height * width + p];
      image.rgb[p * 3] = image.rgb[p * 3 + 1] = image.rgb[p * 3 + 2] = value;
    }
    result.push_back(std::move(image));
  }
  return result;
}

}  // namespace prism
