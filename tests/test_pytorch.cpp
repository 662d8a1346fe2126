// tests/test_pytorch.cpp: whole models against PyTorch. tests/pytorch/make_reference.py writes a
// seeded random model and PyTorch's logits and taps; ctest runs it first and points this test at
// the files through PRISM_REFERENCE_DIR and PRISM_ARCH (one ctest entry per architecture).
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>

#include "engine/plan.hpp"
#include "tests/helpers.hpp"
#include "weights/model_file.hpp"

using namespace prism;

namespace {}  // namespace

TEST_CASE("a model's logits and taps equal PyTorch's", "[.pytorch]") {
  const std::string directory = test::environment("PRISM_REFERENCE_DIR");
  const std::string architecture = test::environment("PRISM_ARCH");
  INFO("run through ctest, which generates the reference first (tests/CMakeLists.txt)");
  REQUIRE(!directory.empty());
  REQUIRE(!architecture.empty());
  const Model model = read_model_file(directory + "/" + architecture + ".model.h5");
  const std::string reference = directory + "/" + architecture + ".reference.h5";
  const auto tensors = read_tensor_group(reference, "tensors");
  const auto taps = read_tensor_group(reference, "taps");
  const Tensor& input = tensors.at("input");
  const Tensor& logits = tensors.at("logits");
  constexpr double tolerance = 1e-4;

  PlanOptions options;
  for (const auto& entry : taps) options.taps.push_back(entry.first);
  Plan tapped(model, input.shape(), options);
  const RunResult result = tapped.run(input.view());

  std::string worst_tap;
  double worst = 0.0;
  for (const auto& [name, expected] : taps) {
    const test::Difference difference = test::compare(result.taps.at(name).view(), expected.view());
    INFO("tap " << name << ": " << difference.describe());
    CHECK(test::close_enough(difference, tolerance));
    if (difference.relative_to_scale() >= worst) worst = difference.relative_to_scale(), worst_tap = name;
  }
  const test::Difference with_taps = test::compare(result.output.view(), logits.view());
  INFO("logits with taps: " << with_taps.describe());
  CHECK(test::close_enough(with_taps, tolerance));

  // Without taps every batch norm is folded and every ReLU fused: the fastest plan.
  Plan fused(model, input.shape());
  const test::Difference without_taps = test::compare(fused.run(input.view()).output.view(), logits.view());
  INFO("logits, fully fused: " << without_taps.describe());
  CHECK(test::close_enough(without_taps, tolerance));
  std::printf("conformance %s input %s: logits %s; worst of %zu taps %s (%.3g of scale)\n", architecture.c_str(),
              shape_to_string(input.shape()).c_str(), without_taps.describe().c_str(), taps.size(), worst_tap.c_str(),
              worst);
}
