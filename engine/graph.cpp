// engine/graph.cpp: building, naming and shape inference for Graph.
#include "engine/graph.hpp"

#include <algorithm>

#include "engine/error.hpp"

namespace prism {

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::conv2d: return "Conv2d";
    case OpKind::batch_norm2d: return "BatchNorm2d";
    case OpKind::relu: return "ReLU";
    case OpKind::max_pool2d: return "MaxPool2d";
    case OpKind::adaptive_avg_pool2d: return "AdaptiveAvgPool2d";
    case OpKind::linear: return "Linear";
    case OpKind::flatten: return "Flatten";
    case OpKind::dropout: return "Dropout";
    case OpKind::add: return "Add";
  }
  return "?";
}

int Graph::add_node(Node node) {
  if (find(node.name) >= 0) throw Error("graph already has a node named " + node.name);
  nodes.push_back(std::move(node));
  return static_cast<int>(nodes.size()) - 1;
}

int Graph::find(const std::string& name) const {
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int Graph::value_of(const TapTarget& target) const {
  return target.input ? nodes.at(target.node).inputs.at(0) : target.node;
}

namespace {
bool is_under(const std::string& name, const std::string& prefix) {
  return name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 && name[prefix.size()] == '.';
}
}  // namespace

TapTarget Graph::resolve_tap(const std::string& tap) const {
  const std::string suffix = ":input";
  const bool input = tap.size() > suffix.size() && tap.compare(tap.size() - suffix.size(), suffix.size(), suffix) == 0;
  const std::string name = input ? tap.substr(0, tap.size() - suffix.size()) : tap;
  if (int exact = find(name); exact >= 0) return {exact, input};
  // A container (a Sequential, a block, a stage): its input is its first node's, its output its
  // last node's, as a forward hook on the container sees them.
  int first = -1, last = -1;
  for (size_t i = 0; i < nodes.size(); ++i) {
    if (!is_under(nodes[i].name, name)) continue;
    if (first < 0) first = static_cast<int>(i);
    last = static_cast<int>(i);
  }
  if (first >= 0) return {input ? first : last, input};

  std::string close;
  for (const Node& node : nodes) {
    if (node.name.find(name.substr(0, name.find('.'))) == 0 && close.size() < 200) {
      close += (close.empty() ? "" : ", ") + node.name;
    }
  }
  throw Error(
      "no layer named '" + name + "' in " + architecture +
      (close.empty() ? "; run `prism info MODEL.h5` to list the layers" : "; layers with that prefix: " + close));
}

std::vector<ParameterSpec> node_parameters(const Node& node) {
  const std::string& n = node.name;
  switch (node.kind) {
    case OpKind::conv2d: {
      const Conv2dParams& p = node.conv2d;
      std::vector<ParameterSpec> specs = {
          {n + ".weight", {p.out_channels, p.in_channels / p.groups, p.kernel_h, p.kernel_w}}};
      if (p.bias) specs.push_back({n + ".bias", {p.out_channels}});
      return specs;
    }
    case OpKind::batch_norm2d: {
      const int64_t c = node.batch_norm2d.channels;
      return {{n + ".weight", {c}}, {n + ".bias", {c}}, {n + ".running_mean", {c}}, {n + ".running_var", {c}}};
    }
    case OpKind::linear: {
      const LinearParams& p = node.linear;
      std::vector<ParameterSpec> specs = {{n + ".weight", {p.out_features, p.in_features}}};
      if (p.bias) specs.push_back({n + ".bias", {p.out_features}});
      return specs;
    }
    default: return {};
  }
}

std::vector<ParameterSpec> Graph::parameters() const {
  std::vector<ParameterSpec> all;
  for (const Node& node : nodes) {
    for (ParameterSpec& spec : node_parameters(node)) all.push_back(std::move(spec));
  }
  return all;
}

std::vector<Shape> Graph::infer_shapes(const Shape& input_shape) const {
  std::vector<Shape> shapes(nodes.size());
  auto shape_of = [&](int value) -> const Shape& { return value == graph_input ? input_shape : shapes[value]; };
  for (size_t i = 0; i < nodes.size(); ++i) {
    const Node& node = nodes[i];
    const Shape& in = shape_of(node.inputs.at(0));
    auto need_channels = [&](int64_t channels) {
      if (in.size() != 4 || in[1] != channels) {
        throw Error(node.name + " expects " + std::to_string(channels) + " channels, got input " + shape_to_string(in));
      }
    };
    Shape out;
    switch (node.kind) {
      case OpKind::conv2d:
        need_channels(node.conv2d.in_channels);
        out = conv2d_output_shape(node.conv2d, in);
        break;
      case OpKind::batch_norm2d:
        need_channels(node.batch_norm2d.channels);
        out = in;
        break;
      case OpKind::max_pool2d: out = max_pool2d_output_shape(node.max_pool2d, in); break;
      case OpKind::adaptive_avg_pool2d: out = adaptive_avg_pool2d_output_shape(node.adaptive_avg_pool2d, in); break;
      case OpKind::relu:
      case OpKind::dropout: out = in; break;
      case OpKind::flatten: out = {in[0], shape_numel(in) / in[0]}; break;
      case OpKind::linear:
        if (in.size() != 2 || in[1] != node.linear.in_features) {
          throw Error(node.name + " expects " + std::to_string(node.linear.in_features) + " features, got input " +
                      shape_to_string(in));
        }
        out = {in[0], node.linear.out_features};
        break;
      case OpKind::add:
        if (shape_of(node.inputs.at(1)) != in) {
          throw Error(node.name + " adds tensors of different shapes " + shape_to_string(in) + " and " +
                      shape_to_string(shape_of(node.inputs.at(1))));
        }
        out = in;
        break;
    }
    for (int64_t d : out) {
      if (d <= 0) {
        throw Error("input " + shape_to_string(input_shape) + " is too small for " + architecture + ": " + node.name +
                    " (" + op_kind_name(node.kind) + ") would turn " + shape_to_string(in) + " into " +
                    shape_to_string(out));
      }
    }
    shapes[i] = std::move(out);
  }
  return shapes;
}

int64_t node_multiply_adds(const Node& node, const Shape& in) {
  switch (node.kind) {
    case OpKind::conv2d: {
      const Conv2dParams& p = node.conv2d;
      return shape_numel(conv2d_output_shape(p, in)) * (p.in_channels / p.groups) * p.kernel_h * p.kernel_w;
    }
    case OpKind::linear: return in[0] * node.linear.in_features * node.linear.out_features;
    default: return 0;
  }
}

}  // namespace prism
