// weights/convert.hpp: from a PyTorch checkpoint to a Model ready to write as a model file: the
// architecture checked against the state_dict's keys and shapes, or inferred from them.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/model.hpp"

namespace prism {

// The one architecture whose state_dict has exactly these keys and shapes. Throws an Error naming
// `source` when none fits (with the closest one's differences) or several do (listing them).
std::string infer_architecture(const std::map<std::string, Shape>& shapes, const std::string& source);

struct ConvertOptions {
  std::string architecture;         // empty: inferred from the keys and shapes
  std::vector<std::string> labels;  // empty: ImageNet's for 1000 classes, none otherwise
  int64_t input_height = 224, input_width = 224;
};

// Reads a checkpoint (weights/torch_checkpoint.hpp) and makes the model the Python converter
// would write for it: its weights_source is "checkpoint FILENAME", as tools/torchvision_to_h5.py
// writes it.
Model convert_checkpoint(const std::string& checkpoint_path, const ConvertOptions& options);

}  // namespace prism
