// engine/models/vgg.cpp: torchvision's VGG (torchvision/models/vgg.py): `features` from a list of
// channel counts with M for a max-pool, a 7x7 adaptive average pool, and a three-layer classifier.
#include <map>

#include "engine/error.hpp"
#include "engine/models/models.hpp"

namespace prism {
namespace {

constexpr int M = 0;  // a 2x2 max-pool in a configuration list

// vgg.py's cfgs: "A" is VGG-11, "B" VGG-13, "D" VGG-16, "E" VGG-19.
const std::map<std::string, std::vector<int>> vgg_configurations = {
    {"vgg11", {64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M}},
    {"vgg13", {64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M}},
    {"vgg16", {64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M}},
    {"vgg19", {64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M}},
};

}  // namespace

Graph build_vgg(const std::string& architecture, int64_t num_classes) {
  const bool batch_norm = architecture.size() > 3 && architecture.substr(architecture.size() - 3) == "_bn";
  const std::string depth = batch_norm ? architecture.substr(0, architecture.size() - 3) : architecture;
  const auto configuration = vgg_configurations.find(depth);
  if (configuration == vgg_configurations.end()) throw Error("unknown VGG architecture " + architecture);

  Graph graph;
  graph.architecture = architecture;
  // make_layers: every entry of `features` is numbered in order, as nn.Sequential numbers them.
  int x = graph_input;
  int64_t channels = 3, index = 0;
  auto next_name = [&] { return "features." + std::to_string(index++); };
  for (int v : configuration->second) {
    if (v == M) {
      x = add_max_pool2d(graph, next_name(), x, MaxPool2dParams{});
      continue;
    }
    Conv2dParams conv;
    conv.in_channels = channels;
    conv.out_channels = v;
    conv.kernel_h = conv.kernel_w = 3;
    conv.padding_h = conv.padding_w = 1;
    x = add_conv2d(graph, next_name(), x, conv);
    if (batch_norm) x = add_batch_norm2d(graph, next_name(), x, v);
    x = add_simple(graph, next_name(), OpKind::relu, {x});
    channels = v;
  }
  x = add_adaptive_avg_pool2d(graph, "avgpool", x, 7);
  x = add_simple(graph, "flatten", OpKind::flatten, {x});
  x = add_linear(graph, "classifier.0", x, 512 * 7 * 7, 4096);
  x = add_simple(graph, "classifier.1", OpKind::relu, {x});
  x = add_simple(graph, "classifier.2", OpKind::dropout, {x});
  x = add_linear(graph, "classifier.3", x, 4096, 4096);
  x = add_simple(graph, "classifier.4", OpKind::relu, {x});
  x = add_simple(graph, "classifier.5", OpKind::dropout, {x});
  add_linear(graph, "classifier.6", x, 4096, num_classes);
  return graph;
}

}  // namespace prism
