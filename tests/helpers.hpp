// tests/helpers.hpp: what every test file shares: seeded random tensors and models, and the
// mixed-tolerance comparison of two tensors.
#pragma once

#include <cstdint>
#include <string>

#include "engine/model.hpp"
#include "engine/tensor.hpp"

namespace prism::test {

// An environment variable, or "" when unset (ctest passes reference folders this way).
std::string environment(const char* name);

// Uniform values in [low, high), the same for the same seed on every machine.
Tensor random_tensor(const Shape& shape, uint32_t seed, float low = -1.0f, float high = 1.0f);

// A model of `architecture` with seeded random weights; batch norm gets random statistics and
// affine parameters (variances positive) so that folding bugs show.
Model random_model(const std::string& architecture, int64_t num_classes, uint32_t seed);

struct Difference {
  double max_abs = 0.0;     // largest |actual - expected|
  double scale = 0.0;       // largest |expected|: the tensor's scale
  double normalised = 0.0;  // ||actual - expected|| / ||expected||
  int64_t worst_index = -1;
  double relative_to_scale() const { return scale > 0 ? max_abs / scale : max_abs; }
  std::string describe() const;
};

// Shapes must match exactly; a NaN anywhere gives an infinite difference.
Difference compare(ConstTensorView actual, ConstTensorView expected);

// The mixed tolerance used throughout: every element within `tolerance` of the tensor's scale,
// and the whole tensor within `tolerance` in normalised (L2) error.
bool close_enough(const Difference& difference, double tolerance);

}  // namespace prism::test
