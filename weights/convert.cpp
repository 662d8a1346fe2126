// weights/convert.cpp: checking or inferring the architecture of a state_dict, and the Model.
#include "weights/convert.hpp"

#include <filesystem>
#include <set>

#include "engine/error.hpp"
#include "engine/models/models.hpp"
#include "weights/imagenet_labels.hpp"
#include "weights/torch_checkpoint.hpp"

namespace prism {
namespace {

// How many keys are missing, unexpected or mis-shaped for `architecture` (-1: no classifier).
int differences(const std::string& architecture, const std::map<std::string, Shape>& shapes) {
  const auto classifier = shapes.find(classifier_weight_key(architecture));
  if (classifier == shapes.end() || classifier->second.empty()) return -1;
  const Graph graph = build_architecture(architecture, classifier->second[0]);
  int count = 0;
  std::set<std::string> expected;
  for (const ParameterSpec& spec : graph.parameters()) {
    expected.insert(spec.key);
    const auto found = shapes.find(spec.key);
    if (found == shapes.end() || found->second != spec.shape) ++count;
  }
  for (const auto& entry : shapes) count += expected.count(entry.first) == 0;
  return count;
}

}  // namespace

std::string infer_architecture(const std::map<std::string, Shape>& shapes, const std::string& source) {
  std::vector<std::string> fitting;
  std::string closest;
  int fewest = -1;
  for (const std::string& architecture : architecture_names()) {
    const int count = differences(architecture, shapes);
    if (count == 0) fitting.push_back(architecture);
    if (count > 0 && (fewest < 0 || count < fewest)) fewest = count, closest = architecture;
  }
  if (fitting.size() == 1) return fitting[0];
  if (fitting.size() > 1) {
    std::string names;
    for (const std::string& name : fitting) names += (names.empty() ? "" : ", ") + name;
    throw Error(source + ": the weights fit several architectures (" + names + "); say which with --arch");
  }
  if (closest.empty()) {
    throw Error(source + ": not a torchvision VGG or ResNet state_dict (no classifier.6.weight or fc.weight); "
                "name the architecture with --arch to see what differs");
  }
  throw Error(source + ": the weights fit none of prism's architectures; the closest is " + closest + " with " +
              std::to_string(fewest) + " keys missing, unexpected or of another shape (--arch " + closest +
              " lists them)");
}

Model convert_checkpoint(const std::string& checkpoint_path, const ConvertOptions& options) {
  TorchStateDict state = read_torch_checkpoint(checkpoint_path);
  for (const std::string& key : state.skipped) {  // integer entries: only BatchNorm's counter is expected
    if (key.size() < 20 || key.compare(key.size() - 20, 20, ".num_batches_tracked") != 0) {
      throw Error(checkpoint_path + ": unexpected integer entry " + key + " in the state_dict");
    }
  }
  std::map<std::string, Shape> shapes;
  for (const auto& [key, tensor] : state.tensors) shapes[key] = tensor.shape();
  const std::string architecture =
      options.architecture.empty() ? infer_architecture(shapes, checkpoint_path) : options.architecture;
  if (!is_architecture(architecture)) build_architecture(architecture, 1);  // throws, listing the known ones
  const auto classifier = shapes.find(classifier_weight_key(architecture));
  if (classifier == shapes.end() || classifier->second.size() != 2) {
    throw Error(checkpoint_path + ": no " + classifier_weight_key(architecture) + "; is --arch " + architecture +
                " right?");
  }
  Model model;
  model.graph = build_architecture(architecture, classifier->second[0]);
  check_parameters(model.graph, shapes, checkpoint_path);
  model.parameters = std::move(state.tensors);
  model.preprocessing.input_height = options.input_height;
  model.preprocessing.input_width = options.input_width;
  model.weights_source = "checkpoint " + std::filesystem::path(checkpoint_path).filename().string();
  model.path = checkpoint_path;
  if (!options.labels.empty()) {
    model.labels = options.labels;
  } else if (model.num_classes() == 1000) {
    model.labels = imagenet_labels();
  }
  if (!model.labels.empty() && static_cast<int64_t>(model.labels.size()) != model.num_classes()) {
    throw Error(std::to_string(model.labels.size()) + " labels for " + std::to_string(model.num_classes()) +
                " classes");
  }
  return model;
}

}  // namespace prism
