// tests/helpers.cpp: random tensors and models, tensor comparison.
#include "tests/helpers.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>

#include "engine/error.hpp"
#include "engine/models/models.hpp"

namespace prism::test {

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

Tensor random_tensor(const Shape& shape, uint32_t seed, float low, float high) {
  Tensor tensor(shape);
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> distribution(low, high);
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.data()[i] = distribution(generator);
  return tensor;
}

Model random_model(const std::string& architecture, int64_t num_classes, uint32_t seed) {
  Model model;
  model.graph = build_architecture(architecture, num_classes);
  model.weights_source = "random (seed " + std::to_string(seed) + ")";
  uint32_t next_seed = seed;
  for (const ParameterSpec& spec : model.graph.parameters()) {
    const auto ends_with = [&](const char* suffix) {
      const std::string s(suffix);
      return spec.key.size() >= s.size() && spec.key.compare(spec.key.size() - s.size(), s.size(), s) == 0;
    };
    // He-like scale for weights so activations keep their size through deep networks.
    float low = -1.0f, high = 1.0f;
    if (ends_with("running_var")) {
      low = 0.5f, high = 2.0f;
    } else if (ends_with("running_mean") || ends_with(".bias")) {
      low = -0.2f, high = 0.2f;
    } else if (spec.shape.size() == 1) {  // batch norm weight
      low = 0.5f, high = 1.5f;
    } else {
      const double fan_in = static_cast<double>(shape_numel(spec.shape) / spec.shape[0]);
      high = static_cast<float>(std::sqrt(6.0 / fan_in));
      low = -high;
    }
    model.parameters.emplace(spec.key, random_tensor(spec.shape, ++next_seed, low, high));
  }
  return model;
}

std::string Difference::describe() const {
  char text[160];
  std::snprintf(text, sizeof text, "max |diff| %.3g at %lld, scale %.3g, max |diff|/scale %.3g, normalised %.3g",
                max_abs, static_cast<long long>(worst_index), scale, relative_to_scale(), normalised);
  return text;
}

Difference compare(ConstTensorView actual, ConstTensorView expected) {
  if (actual.shape != expected.shape) {
    throw Error("shape " + shape_to_string(actual.shape) + " differs from expected " + shape_to_string(expected.shape));
  }
  Difference d;
  double error_squares = 0.0, expected_squares = 0.0;
  for (int64_t i = 0; i < expected.numel(); ++i) {
    const double a = actual.data[i], e = expected.data[i];
    double diff = std::abs(a - e);
    if (std::isnan(diff)) diff = std::numeric_limits<double>::infinity();
    if (diff > d.max_abs || d.worst_index < 0) {
      d.max_abs = diff;
      d.worst_index = i;
    }
    d.scale = std::max(d.scale, std::abs(e));
    error_squares += diff * diff;
    expected_squares += e * e;
  }
  d.normalised = expected_squares > 0 ? std::sqrt(error_squares / expected_squares) : std::sqrt(error_squares);
  return d;
}

bool close_enough(const Difference& difference, double tolerance) {
  return difference.relative_to_scale() <= tolerance && difference.normalised <= tolerance;
}

}  // namespace prism::test
