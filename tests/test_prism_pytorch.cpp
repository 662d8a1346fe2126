// tests/test_prism_pytorch.cpp: PRISM maps against the PyTorch reference of TorchPRISM's
// algorithm (tests/pytorch/make_prism_reference.py, run by ctest first): vgg16 and resnet50 with
// random weights on the sample photos as PNG, and the shipped Fashion-MNIST model on test images;
// every option, a batch of one image and of all of them, and for resnet50 all of them at a size
// whose last capture is wide enough for the PCA's block Krylov path.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "engine/plan.hpp"
#include "prism/capture_points.hpp"
#include "prism/prism.hpp"
#include "tests/helpers.hpp"
#include "tools/image/image.hpp"
#include "weights/model_file.hpp"

using namespace prism;

namespace {

// Runs PRISM on the given image files as `prism run` does; maps come back as (N, H, W, 3).
struct Configuration {
  PrismOptions options;
  CaptureSet captures = CaptureSet::torchprism;
  std::string layer;
  int64_t input_size = 0;  // square, instead of the model's own
};

Configuration parse_configuration(const std::string& name) {
  Configuration c;
  if (name == "no_ge") c.options.gradual_extrapolation = false;
  if (name == "inclusive" || name == "quantised" || name == "no_ge_inclusive") c.options.inclusive = true;
  if (name == "exclusive" || name == "quantised") c.options.exclusive = true;
  if (name == "no_ge_inclusive") c.options.gradual_extrapolation = false;
  if (name == "components=2.3.4") c.options.components = {1, 2, 3};
  if (name == "layer=features.23") c.layer = "features.23";
  if (name == "stages") c.captures = CaptureSet::stages;
  if (name.rfind("size=", 0) == 0) c.input_size = std::stoll(name.substr(5));
  return c;
}

PrismResult run_prism(const Model& model, const std::vector<std::string>& files, const Configuration& c) {
  Preprocessing preprocessing = model.preprocessing;
  if (c.input_size > 0) preprocessing.input_height = preprocessing.input_width = c.input_size;
  const int64_t height = preprocessing.input_height, width = preprocessing.input_width;
  std::vector<Image> images;
  for (const std::string& file : files) {
    images.push_back(resize_for_model(read_image(file), preprocessing, ResizeMode::stretch));
  }
  const Tensor input = images_to_batch(images, preprocessing);
  const std::vector<std::string> captures = c.layer.empty()
                                                ? capture_points(model.graph, c.captures)
                                                : capture_points_ending_at(model.graph, c.captures, c.layer);
  PlanOptions plan_options;
  request_captures(plan_options, captures);
  PrismCollector collector(captures, input.dim(0));
  // Two images at a time: the PCA must still cover all of them.
  for (int64_t first = 0; first < input.dim(0); first += 2) {
    const int64_t count = std::min<int64_t>(2, input.dim(0) - first);
    const Tensor part = Tensor::from_data({count, 3, height, width}, input.data() + first * 3 * height * width);
    Plan plan(model, part.shape(), plan_options);
    collector.add(plan.run(part.view()));
  }
  return compute_prism(collector, c.options, height, width);
}

}  // namespace

TEST_CASE("PRISM maps equal the PyTorch reference of TorchPRISM's algorithm", "[.prism_pytorch]") {
  const std::string dir = test::environment("PRISM_PRISM_REFERENCE_DIR");
  const std::string architecture = test::environment("PRISM_ARCH");
  REQUIRE(!dir.empty());
  REQUIRE(!architecture.empty());
  const Model model = read_model_file(dir + "/" + architecture + ".model.h5");
  const std::string reference = dir + "/" + architecture + ".prism.h5";
  const auto expected_maps = read_tensor_group(reference, "maps");
  const auto expected_variance = read_tensor_group(reference, "variance");
  REQUIRE(expected_maps.size() >= 14);
  // Every PNG of the folder in name order, as the reference script took them.
  std::vector<std::string> all;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".png") all.push_back(entry.path().string());
  }
  std::sort(all.begin(), all.end());
  REQUIRE(all.size() >= 2);

  for (const auto& [key, expected] : expected_maps) {
    const std::string name = key.substr(0, key.find('@'));
    const size_t count = std::stoul(key.substr(key.find('@') + 1));
    REQUIRE((count == 1 || count == all.size()));
    const std::vector<std::string> files = count == all.size() ? all : std::vector<std::string>{all[1]};
    const PrismResult result = run_prism(model, files, parse_configuration(name));
    const Tensor maps = nchw_to_nhwc(result.maps.view());
    if (std::isnan(expected.data()[0])) {
      // One image with --exclusive: every colour is common, the maps are all black and PyTorch's
      // normalisation divides 0 by 0. Ours defines that case as black (zeros), never NaN.
      INFO(architecture << " " << key << ": the reference is NaN; ours must be all zeros");
      CHECK(test::compare(maps.view(), Tensor(maps.shape()).view()).max_abs == 0.0);
      continue;
    }
    const test::Difference d = test::compare(maps.view(), expected.view());
    INFO(architecture << " " << key << ": " << d.describe());
    CHECK(d.max_abs <= 1e-3);
    const Tensor& variance = expected_variance.at(key);
    // Every component up to 128 of them; beyond that the leading 32 (prism/pca.hpp).
    const int64_t reported = variance.numel() <= 128 ? variance.numel() : 32;
    REQUIRE(static_cast<int64_t>(result.explained_variance_ratio.size()) == reported);
    for (int64_t i = 0; i < std::min<int64_t>(variance.numel(), 10); ++i) {
      CHECK(std::abs(result.explained_variance_ratio[i] - variance.data()[i]) < 1e-5);
    }
    std::printf("PRISM %s %-22s max |diff| %.2e\n", architecture.c_str(), key.c_str(), d.max_abs);
  }

  // The same photos as JPEG: stb_image decodes a little differently from PIL.
  const std::string samples = test::environment("PRISM_SAMPLES_DIR");
  if (samples.empty()) return;  // the images were PNG to begin with
  std::vector<std::string> jpegs;
  for (const char* stem : {"coyote", "wolf_01", "wolf_02", "wolves"}) jpegs.push_back(samples + "/" + stem + ".jpg");
  const Tensor maps = nchw_to_nhwc(run_prism(model, jpegs, parse_configuration("ge")).maps.view());
  const Tensor& png_maps = expected_maps.at("ge@" + std::to_string(all.size()));
  const test::Difference d = test::compare(maps.view(), png_maps.view());
  double total = 0.0;
  for (int64_t i = 0; i < maps.numel(); ++i) total += std::abs(maps.data()[i] - png_maps.data()[i]);
  std::printf("PRISM %s from JPEG instead of PNG: max |diff| %.3g, mean |diff| %.3g\n", architecture.c_str(), d.max_abs,
              total / maps.numel());
  CHECK(total / maps.numel() < 0.02);
}
