// engine/models/resnet.cpp: torchvision's ResNet family (torchvision/models/resnet.py): a block
// type, four stage depths, and for ResNeXt and Wide ResNet the groups and width per group.
// torchvision calls a block's `relu` module two or three times; its k-th call is named
// "relu#k" here (the first is plain "relu"), so every node has its own name.
#include <map>

#include "engine/error.hpp"
#include "engine/models/models.hpp"

namespace prism {
namespace {

struct ResNetConfiguration {
  bool bottleneck;  // Bottleneck (expansion 4) or BasicBlock (expansion 1)
  std::vector<int> depths;
  int64_t groups = 1;
  int64_t width_per_group = 64;
};

const std::map<std::string, ResNetConfiguration> resnet_configurations = {
    {"resnet18", {false, {2, 2, 2, 2}}},
    {"resnet34", {false, {3, 4, 6, 3}}},
    {"resnet50", {true, {3, 4, 6, 3}}},
    {"resnet101", {true, {3, 4, 23, 3}}},
    {"resnet152", {true, {3, 8, 36, 3}}},
    {"resnext50_32x4d", {true, {3, 4, 6, 3}, 32, 4}},
    {"resnext101_32x8d", {true, {3, 4, 23, 3}, 32, 8}},
    {"resnext101_64x4d", {true, {3, 4, 23, 3}, 64, 4}},
    {"wide_resnet50_2", {true, {3, 4, 6, 3}, 1, 128}},
    {"wide_resnet101_2", {true, {3, 4, 23, 3}, 1, 128}},
};

Conv2dParams conv_params(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups = 1) {
  Conv2dParams p;
  p.in_channels = in;
  p.out_channels = out;
  p.kernel_h = p.kernel_w = kernel;
  p.stride_h = p.stride_w = stride;
  p.padding_h = p.padding_w = kernel / 2;  // conv3x3 pads 1, conv1x1 pads 0, the stem's 7x7 pads 3
  p.groups = groups;
  p.bias = false;
  return p;
}

// One BasicBlock or Bottleneck; returns the node holding the block's output.
int add_block(Graph& graph, const std::string& name, int x, const ResNetConfiguration& config, int64_t inplanes,
              int64_t planes, int64_t stride) {
  const int64_t expansion = config.bottleneck ? 4 : 1;
  const int identity = x;
  int relu_calls = 0;
  auto relu = [&](int input) {
    ++relu_calls;
    const std::string suffix = relu_calls == 1 ? "" : "#" + std::to_string(relu_calls);
    return add_simple(graph, name + ".relu" + suffix, OpKind::relu, {input});
  };
  if (config.bottleneck) {
    // torchvision's v1.5 Bottleneck: the stride sits on the 3x3 convolution.
    const int64_t width = planes * config.width_per_group / 64 * config.groups;
    x = add_conv2d(graph, name + ".conv1", x, conv_params(inplanes, width, 1, 1));
    x = relu(add_batch_norm2d(graph, name + ".bn1", x, width));
    x = add_conv2d(graph, name + ".conv2", x, conv_params(width, width, 3, stride, config.groups));
    x = relu(add_batch_norm2d(graph, name + ".bn2", x, width));
    x = add_conv2d(graph, name + ".conv3", x, conv_params(width, planes * expansion, 1, 1));
    x = add_batch_norm2d(graph, name + ".bn3", x, planes * expansion);
  } else {
    x = add_conv2d(graph, name + ".conv1", x, conv_params(inplanes, planes, 3, stride));
    x = relu(add_batch_norm2d(graph, name + ".bn1", x, planes));
    x = add_conv2d(graph, name + ".conv2", x, conv_params(planes, planes, 3, 1));
    x = add_batch_norm2d(graph, name + ".bn2", x, planes);
  }
  int shortcut = identity;
  if (stride != 1 || inplanes != planes * expansion) {
    shortcut =
        add_conv2d(graph, name + ".downsample.0", identity, conv_params(inplanes, planes * expansion, 1, stride));
    shortcut = add_batch_norm2d(graph, name + ".downsample.1", shortcut, planes * expansion);
  }
  x = add_simple(graph, name + ".add", OpKind::add, {x, shortcut});
  return relu(x);
}

}  // namespace

Graph build_resnet(const std::string& architecture, int64_t num_classes) {
  const auto found = resnet_configurations.find(architecture);
  if (found == resnet_configurations.end()) throw Error("unknown ResNet architecture " + architecture);
  const ResNetConfiguration& config = found->second;

  Graph graph;
  graph.architecture = architecture;
  int x = add_conv2d(graph, "conv1", graph_input, conv_params(3, 64, 7, 2));
  x = add_batch_norm2d(graph, "bn1", x, 64);
  x = add_simple(graph, "relu", OpKind::relu, {x});
  MaxPool2dParams pool;
  pool.kernel_h = pool.kernel_w = 3;
  pool.padding_h = pool.padding_w = 1;
  x = add_max_pool2d(graph, "maxpool", x, pool);

  const int64_t expansion = config.bottleneck ? 4 : 1;
  int64_t inplanes = 64;
  const int64_t stage_planes[4] = {64, 128, 256, 512};
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t planes = stage_planes[stage];
    for (int block = 0; block < config.depths[stage]; ++block) {
      const std::string name = "layer" + std::to_string(stage + 1) + "." + std::to_string(block);
      const int64_t stride = stage > 0 && block == 0 ? 2 : 1;
      x = add_block(graph, name, x, config, inplanes, planes, stride);
      inplanes = planes * expansion;
    }
  }
  x = add_adaptive_avg_pool2d(graph, "avgpool", x, 1);
  x = add_simple(graph, "flatten", OpKind::flatten, {x});
  add_linear(graph, "fc", x, 512 * expansion, num_classes);
  return graph;
}

}  // namespace prism
