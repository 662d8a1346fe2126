// engine/model.cpp: parameter look-up and the check of a state_dict against a graph.
#include "engine/model.hpp"

#include <set>

#include "engine/error.hpp"

namespace prism {

int64_t Model::num_classes() const {
  return graph.nodes.back().linear.out_features;
}

int64_t Model::parameter_count() const {
  // As torchvision counts them (model.parameters()): batch norm's running statistics are buffers.
  auto is_buffer = [](const std::string& key) {
    return key.find(".running_mean") != std::string::npos || key.find(".running_var") != std::string::npos;
  };
  int64_t count = 0;
  for (const auto& entry : parameters) count += is_buffer(entry.first) ? 0 : entry.second.numel();
  return count;
}

const Tensor& Model::parameter(const std::string& key) const {
  const auto found = parameters.find(key);
  if (found == parameters.end()) throw Error(path + ": missing parameter " + key);
  return found->second;
}

void check_parameters(const Graph& graph, const std::map<std::string, Shape>& shapes, const std::string& source) {
  std::string problems;
  int count = 0;
  auto report = [&](const std::string& line) {
    if (++count <= 12) problems += "\n  " + line;
  };
  std::set<std::string> expected;
  for (const ParameterSpec& spec : graph.parameters()) {
    expected.insert(spec.key);
    const auto found = shapes.find(spec.key);
    if (found == shapes.end()) {
      report("missing " + spec.key + " " + shape_to_string(spec.shape));
    } else if (found->second != spec.shape) {
      report(spec.key + " has shape " + shape_to_string(found->second) + ", " + graph.architecture + " needs " +
             shape_to_string(spec.shape));
    }
  }
  for (const auto& entry : shapes) {
    if (expected.count(entry.first) == 0) report("unexpected " + entry.first);
  }
  if (count == 0) return;
  if (count > 12) problems += "\n  ... and " + std::to_string(count - 12) + " more";
  throw Error(source + ": the weights do not fit " + graph.architecture + " (" + std::to_string(count) +
              " problems):" + problems +
              "\nIs the architecture right? Convert the checkpoint again with "
              "tools/torchvision_to_h5.py --arch ARCH.");
}

}  // namespace prism
