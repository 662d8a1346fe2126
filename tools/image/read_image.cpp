// tools/image/read_image.cpp: decoding image files with stb_image (Debian's libstb).
#include <stb_image.h>

#include <cstring>
#include <memory>

#include "engine/error.hpp"
#include "tools/image/image.hpp"

namespace prism {

Image read_image(const std::string& path) {
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> pixels(stbi_load(path.c_str(), &width, &height, &channels, 3),
                                                   stbi_image_free);
  if (!pixels) {
    const char* reason = stbi_failure_reason();
    throw Error(path + ": cannot read the image (" + (reason ? reason : "unknown reason") +
                "); supported: JPEG, PNG, BMP, GIF, TGA, PNM");
  }
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.assign(pixels.get(), pixels.get() + static_cast<size_t>(width) * height * 3);
  return image;
}

}  // namespace prism
