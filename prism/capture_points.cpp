// prism/capture_points.cpp: the capture sets, read off the graph rather than listed per model.
#include "prism/capture_points.hpp"

#include "engine/error.hpp"

namespace prism {

CaptureSet parse_capture_set(const std::string& name) {
  if (name == "torchprism") return CaptureSet::torchprism;
  if (name == "stages") return CaptureSet::stages;
  if (name == "auto") return CaptureSet::automatic;
  throw Error("unknown capture set '" + name + "'; use torchprism, stages or auto");
}

const char* capture_set_name(CaptureSet set) {
  switch (set) {
    case CaptureSet::torchprism: return "torchprism";
    case CaptureSet::stages: return "stages";
    case CaptureSet::automatic: return "auto";
  }
  return "?";
}

namespace {

bool is_resnet(const Graph& graph) {
  return graph.find("layer1.0.conv1") >= 0;
}

// TorchPRISM registers a forward hook on every MaxPool2d and every Conv2d whose stride exceeds
// (1, 1), and keeps the input of the first one to fire as well. Hooks fire in forward order,
// which is the graph's order.
std::vector<std::string> torchprism_points(const Graph& graph) {
  std::vector<std::string> points;
  for (const Node& node : graph.nodes) {
    const bool strided_conv = node.kind == OpKind::conv2d && (node.conv2d.stride_h > 1 || node.conv2d.stride_w > 1);
    if (node.kind != OpKind::max_pool2d && !strided_conv) continue;
    if (points.empty()) points.push_back(node.name + ":input");
    points.push_back(node.name);
  }
  return points;
}

}  // namespace

std::vector<std::string> capture_points(const Graph& graph, CaptureSet set) {
  if (set == CaptureSet::automatic) set = is_resnet(graph) ? CaptureSet::stages : CaptureSet::torchprism;
  if (set == CaptureSet::stages && is_resnet(graph)) return {"relu", "layer1", "layer2", "layer3", "layer4"};
  return torchprism_points(graph);
}

std::vector<std::string> capture_points_ending_at(const Graph& graph, CaptureSet set, const std::string& layer) {
  const int layer_value = graph.value_of(graph.resolve_tap(layer));
  std::vector<std::string> points;
  for (const std::string& point : capture_points(graph, set)) {
    if (graph.value_of(graph.resolve_tap(point)) < layer_value) points.push_back(point);
  }
  points.push_back(layer);
  return points;
}

}  // namespace prism
