// engine/models/models.cpp: the list of architectures and the node-appending helpers.
#include "engine/models/models.hpp"

#include "engine/error.hpp"

namespace prism {

std::vector<std::string> architecture_names() {
  return {"vgg11",
          "vgg11_bn",
          "vgg13",
          "vgg13_bn",
          "vgg16",
          "vgg16_bn",
          "vgg19",
          "vgg19_bn",
          "resnet18",
          "resnet34",
          "resnet50",
          "resnet101",
          "resnet152",
          "wide_resnet50_2",
          "wide_resnet101_2",
          "resnext50_32x4d",
          "resnext101_32x8d",
          "resnext101_64x4d"};
}

bool is_architecture(const std::string& name) {
  for (const std::string& known : architecture_names()) {
    if (known == name) return true;
  }
  return false;
}

Graph build_architecture(const std::string& architecture, int64_t num_classes) {
  if (!is_architecture(architecture)) {
    std::string known;
    for (const std::string& name : architecture_names()) known += " " + name;
    throw Error("unknown architecture '" + architecture + "'; known:" + known);
  }
  if (num_classes <= 0) throw Error("number of classes must be positive");
  return architecture.rfind("vgg", 0) == 0 ? build_vgg(architecture, num_classes)
                                           : build_resnet(architecture, num_classes);
}

std::string classifier_weight_key(const std::string& architecture) {
  return architecture.rfind("vgg", 0) == 0 ? "classifier.6.weight" : "fc.weight";
}

namespace {
Node make_node(const std::string& name, OpKind kind, std::vector<int> inputs) {
  Node node;
  node.name = name;
  node.kind = kind;
  node.inputs = std::move(inputs);
  return node;
}
}  // namespace

int add_conv2d(Graph& graph, const std::string& name, int input, Conv2dParams params) {
  Node node = make_node(name, OpKind::conv2d, {input});
  node.conv2d = params;
  return graph.add_node(std::move(node));
}

int add_batch_norm2d(Graph& graph, const std::string& name, int input, int64_t channels) {
  Node node = make_node(name, OpKind::batch_norm2d, {input});
  node.batch_norm2d.channels = channels;
  return graph.add_node(std::move(node));
}

int add_simple(Graph& graph, const std::string& name, OpKind kind, std::vector<int> inputs) {
  return graph.add_node(make_node(name, kind, std::move(inputs)));
}

int add_max_pool2d(Graph& graph, const std::string& name, int input, MaxPool2dParams params) {
  Node node = make_node(name, OpKind::max_pool2d, {input});
  node.max_pool2d = params;
  return graph.add_node(std::move(node));
}

int add_adaptive_avg_pool2d(Graph& graph, const std::string& name, int input, int64_t size) {
  Node node = make_node(name, OpKind::adaptive_avg_pool2d, {input});
  node.adaptive_avg_pool2d = {size, size};
  return graph.add_node(std::move(node));
}

int add_linear(Graph& graph, const std::string& name, int input, int64_t in, int64_t out) {
  Node node = make_node(name, OpKind::linear, {input});
  node.linear = {in, out, true};
  return graph.add_node(std::move(node));
}

}  // namespace prism
