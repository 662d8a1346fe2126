// tools/image/preprocess.cpp: torchvision's transforms on a PIL image, in order: Resize (either
// to (H, W) or of the short side), CenterCrop, ToTensor (x / 255), Normalize ((x - mean) / std).
#include <cmath>

#include "engine/error.hpp"
#include "tools/image/image.hpp"

namespace prism {

Image to_grey(const Image& image) {
  Image grey = image;
  for (size_t i = 0; i < grey.rgb.size(); i += 3) {
    // PIL's convert("L"): ITU-R 601-2 luma in 16-bit fixed point, rounded.
    const uint32_t luma = (grey.rgb[i] * 19595u + grey.rgb[i + 1] * 38470u + grey.rgb[i + 2] * 7471u + 0x8000u) >> 16;
    grey.rgb[i] = grey.rgb[i + 1] = grey.rgb[i + 2] = static_cast<uint8_t>(luma);
  }
  return grey;
}

Image resize_for_model(const Image& original, const Preprocessing& pre, ResizeMode mode) {
  // A model trained on grey images (the default Fashion-MNIST one) sees every image in grey.
  const Image image = pre.grey ? to_grey(original) : original;
  if (mode == ResizeMode::stretch) return resize_bilinear_pil(image, pre.input_width, pre.input_height);
  // transforms.Resize(256): the short side becomes 256 * crop / 224 (256 for a 224 model), the
  // long side int(short_target * long / short), truncated as torchvision does.
  const int64_t crop_size = std::min(pre.input_width, pre.input_height);
  const int64_t short_target = crop_size * 256 / 224;
  const bool portrait = image.width <= image.height;
  const int64_t short_side = portrait ? image.width : image.height;
  const int64_t long_side = portrait ? image.height : image.width;
  const int64_t long_target = static_cast<int64_t>(static_cast<double>(short_target) * long_side / short_side);
  const Image resized = portrait ? resize_bilinear_pil(image, short_target, long_target)
                                 : resize_bilinear_pil(image, long_target, short_target);
  // CenterCrop: int(round((size - crop) / 2.0)) with Python's round half to even.
  const auto offset = [](int64_t size, int64_t crop) {
    return static_cast<int64_t>(std::nearbyint((size - crop) / 2.0));
  };
  return crop(resized, offset(resized.width, pre.input_width), offset(resized.height, pre.input_height),
              pre.input_width, pre.input_height);
}

Tensor images_to_batch(const std::vector<Image>& images, const Preprocessing& pre) {
  const int64_t height = pre.input_height, width = pre.input_width;
  Tensor batch({static_cast<int64_t>(images.size()), 3, height, width});  // (N, 3, H, W)
  for (size_t n = 0; n < images.size(); ++n) {
    const Image& image = images[n];
    if (image.width != width || image.height != height) {
      throw Error("image " + std::to_string(n) + " is " + std::to_string(image.width) + "x" +
                  std::to_string(image.height) + ", the model takes " + std::to_string(width) + "x" +
                  std::to_string(height));
    }
    for (int c = 0; c < 3; ++c) {
      float* plane = batch.data() + (n * 3 + c) * height * width;
      for (int64_t i = 0; i < height * width; ++i) {
        // float32 throughout, in PyTorch's order: divide by 255, subtract the mean, divide by std.
        const float value = static_cast<float>(image.rgb[i * 3 + c]) / 255.0f;
        plane[i] = (value - pre.mean[c]) / pre.std[c];
      }
    }
  }
  return batch;
}

}  // namespace prism
