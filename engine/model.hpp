// engine/model.hpp: a graph with its weights and the facts a user needs to feed it (input size,
// normalisation, class labels). Files are read in weights/; this is the in-memory form.
#pragma once

#include <array>
#include <map>
#include <string>
#include <vector>

#include "engine/graph.hpp"
#include "engine/tensor.hpp"

namespace prism {

struct Preprocessing {
  int64_t input_height = 224;
  int64_t input_width = 224;
  std::array<float, 3> mean = {0.485f, 0.456f, 0.406f};  // ImageNet's, as torchvision uses
  std::array<float, 3> std = {0.229f, 0.224f, 0.225f};
  bool grey = false;  // images become grey (PIL's convert("L")) copied to 3 channels, as in training
};

struct Model {
  Graph graph;
  std::map<std::string, Tensor> parameters;  // state_dict key -> tensor of the state_dict's shape
  Preprocessing preprocessing;
  std::vector<std::string> labels;  // one per class; may be empty
  std::string weights_source;       // where the weights came from, e.g. "random (seed 0)"
  std::string path;                 // the file it was read from, for messages
  double recorded_accuracy = -1.0;  // test accuracy the training script recorded; -1 if none

  int64_t num_classes() const;
  int64_t parameter_count() const;
  const Tensor& parameter(const std::string& key) const;  // throws naming the key
  bool has_random_weights() const { return weights_source.rfind("random", 0) == 0; }
};

// Checks that `parameters` holds exactly the graph's parameters with their shapes; throws one
// message listing every missing, unexpected and mis-shaped key, naming `source` (a file).
void check_parameters(const Graph& graph, const std::map<std::string, Shape>& shapes, const std::string& source);

}  // namespace prism
