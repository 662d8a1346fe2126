// tests/test_image.cpp: decoding and preprocessing against PIL and torchvision.
// tests/pytorch/make_image_reference.py writes the images and what PIL and torchvision make of
// them; ctest runs it first and sets PRISM_IMAGE_REFERENCE_DIR.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

#include "tests/helpers.hpp"
#include "tools/image/image.hpp"
#include "weights/model_file.hpp"

using namespace prism;

namespace {

std::string reference_dir() {
  const char* value = std::getenv("PRISM_IMAGE_REFERENCE_DIR");
  return value ? value : "";
}

Image image_from_tensor(const Tensor& hwc) {  // (H, W, 3) floats holding 0..255
  Image image;
  image.height = hwc.dim(0);
  image.width = hwc.dim(1);
  for (int64_t i = 0; i < hwc.numel(); ++i) image.rgb.push_back(static_cast<uint8_t>(hwc.data()[i]));
  return image;
}

int max_grey_level_difference(const Image& a, const Image& b) {
  int worst = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) worst = std::max(worst, std::abs(a.rgb[i] - b.rgb[i]));
  return worst;
}

// The mean absolute difference of a decoded image from PIL's decode of the same file, which must
// have the same size.
double mean_grey_level_difference(const Image& actual, const Image& pil) {
  REQUIRE(actual.width == pil.width);
  REQUIRE(actual.height == pil.height);
  double total = 0.0;
  for (size_t i = 0; i < pil.rgb.size(); ++i) total += std::abs(actual.rgb[i] - pil.rgb[i]);
  return total / pil.rgb.size();
}

// Each file `folder`/NAME decodes to expected[NAME], PIL's pixels (H, W, 3), exactly.
void check_decodes_to_pil_pixels(const std::map<std::string, Tensor>& expected_images, const std::string& folder) {
  for (const auto& [name, expected] : expected_images) {
    const Image actual = read_image(folder + "/" + name);
    const Image pil = image_from_tensor(expected);
    const double mean = mean_grey_level_difference(actual, pil);  // checks the sizes first
    INFO(name << ": mean |prism - PIL| " << mean << " grey levels");
    CHECK(max_grey_level_difference(actual, pil) == 0);
  }
}

}  // namespace

TEST_CASE("resize matches PIL's bilinear resize within one grey level", "[.images]") {
  REQUIRE(!reference_dir().empty());
  const std::string file = reference_dir() + "/images.reference.h5";
  const auto sources = read_tensor_group(file, "sources");
  const auto resized = read_tensor_group(file, "resized");
  REQUIRE(resized.size() >= 20);
  int exact = 0;
  for (const auto& [key, expected] : resized) {
    const std::string name = key.substr(0, key.find('@'));
    int64_t width = 0, height = 0;
    REQUIRE(std::sscanf(key.c_str() + key.find('@') + 1, "%ldx%ld", &width, &height) == 2);
    const Image source = image_from_tensor(sources.at(name));
    const Image actual = resize_bilinear_pil(source, width, height);
    REQUIRE(actual.width == expected.dim(1));
    REQUIRE(actual.height == expected.dim(0));
    const int difference = max_grey_level_difference(actual, image_from_tensor(expected));
    INFO(key << " from " << source.width << "x" << source.height << ": max difference " << difference);
    CHECK(difference <= 1);
    exact += difference == 0;
  }
  std::printf("PIL resize: %d of %zu resized images identical to the grey level\n", exact, resized.size());
}

TEST_CASE("PNG files preprocess to torchvision's tensors", "[.images]") {
  REQUIRE(!reference_dir().empty());
  const std::string file = reference_dir() + "/images.reference.h5";
  const Preprocessing imagenet;  // 224x224, ImageNet mean and std
  // One grey level, after ToTensor and Normalize: 1 / 255 / std.
  const double one_level = 1.0 / 255.0 / 0.225 + 1e-6;
  for (const auto& [group, mode] :
       {std::pair{"stretch", ResizeMode::stretch}, std::pair{"center_crop", ResizeMode::center_crop}}) {
    const auto expected = read_tensor_group(file, group);
    REQUIRE(expected.size() >= 5);
    for (const auto& [name, tensor] : expected) {
      const Image image = resize_for_model(read_image(reference_dir() + "/" + name), imagenet, mode);
      const Tensor actual = images_to_batch({image}, imagenet);
      const test::Difference d = test::compare(actual.view(), tensor.view());
      INFO(group << " " << name << ": " << d.describe());
      CHECK(d.max_abs <= one_level);
    }
  }
}

// libjpeg-turbo, set up as PIL sets it up, gives PIL's pixels exactly; another decoder would
// round its inverse DCT and chroma upsampling differently, a few grey levels on some pixels.
TEST_CASE("the JPEG samples decode to PIL's pixels exactly", "[.images]") {
  REQUIRE(!reference_dir().empty());
  const char* samples = std::getenv("PRISM_SAMPLES_DIR");
  REQUIRE(samples != nullptr);
  const auto expected_images = read_tensor_group(reference_dir() + "/images.reference.h5", "jpeg");
  REQUIRE(expected_images.size() >= 4);
  check_decodes_to_pil_pixels(expected_images, samples);
}

TEST_CASE(
    "other formats decode to PIL's pixels exactly: CMYK, progressive, grey and subsampled JPEG, palette, "
    "alpha and 16-bit PNG, GIF",
    "[.images]") {
  REQUIRE(!reference_dir().empty());
  const auto expected_images = read_tensor_group(reference_dir() + "/images.reference.h5", "formats");
  REQUIRE(expected_images.size() == 10);
  check_decodes_to_pil_pixels(expected_images, reference_dir());
}

TEST_CASE("read_image names the file when it cannot decode it", "[images]") {
  const std::string path = "/nonexistent/folder/picture.png";
  CHECK_THROWS_WITH(read_image(path), Catch::Contains(path));
}
