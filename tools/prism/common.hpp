// tools/prism/common.hpp: what several `prism` subcommands share: finding image files, loading
// a model with a note about its weights, and turning logits into ranked classes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/model.hpp"
#include "engine/tensor.hpp"
#include "tools/image/image.hpp"

namespace prism {

// Files as given, folders as their image files (sorted by name), unexpanded globs ("a/*.jpg")
// as their matches (sorted); throws naming a missing path, an empty folder or glob, or an
// empty list.
std::vector<std::string> expand_image_arguments(const std::vector<std::string>& arguments);

// Reads each file with read_image. Without skip_bad the first file that cannot be read stops
// everything (its Error); with it, such a file is reported on stderr ("skipped FILE: why"), left
// out of `files` and listed in `skipped` as (file, reason). Throws when no image is left.
std::vector<Image> read_images(std::vector<std::string>& files, bool skip_bad, int64_t max_pixels,
                               std::vector<std::pair<std::string, std::string>>& skipped);

// Reads a model file; says on stderr when its weights are random, so no one mistakes the output.
Model load_model_for_cli(const std::string& path);

// Sets OpenMP's thread count when threads > 0; returns the count in effect.
int use_threads(int threads);

struct RankedClass {
  int64_t index;
  std::string label;  // "class 17" when the model has no labels
  float probability;
};

// Softmax of each row of (N, classes) logits, then the k most probable classes, best first.
std::vector<std::vector<RankedClass>> top_classes(const Tensor& logits, const std::vector<std::string>& labels,
                                                  int64_t k);

// [{"index": i, "label": ..., "prob": p}, ...]: the top classes as `classify --json` and
// summary.json write them.
nlohmann::json top_classes_json(const std::vector<RankedClass>& ranked);

}  // namespace prism
