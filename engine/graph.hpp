// engine/graph.hpp: a network as data: a flat list of nodes in execution order, each named by its
// torchvision module path. Leaves out weights (see engine/model.hpp) and execution (engine/plan.hpp).
#pragma once

#include <string>
#include <vector>

#include "engine/tensor.hpp"
#include "layers/adaptive_avg_pool2d.hpp"
#include "layers/batch_norm2d.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"

namespace prism {

enum class OpKind {
  conv2d,
  batch_norm2d,
  relu,
  max_pool2d,
  adaptive_avg_pool2d,
  linear,
  flatten,  // torch.flatten(x, 1): (N, C, H, W) -> (N, C * H * W); no copy
  dropout,  // identity in evaluation
  add,      // the residual sum of a ResNet block
};

const char* op_kind_name(OpKind kind);

// Index of the value a node reads: another node's output, or the network's input.
constexpr int graph_input = -1;

struct Node {
  std::string name;  // "features.0", "layer1.0.conv1", "layer1.0.relu#2", "layer1.0.add"
  OpKind kind = OpKind::relu;
  std::vector<int> inputs;  // node indices (or graph_input); two for add, one otherwise
  // The attributes of this node's op; only the one matching `kind` is meaningful.
  Conv2dParams conv2d;
  BatchNorm2dParams batch_norm2d;
  MaxPool2dParams max_pool2d;
  AdaptiveAvgPool2dParams adaptive_avg_pool2d;
  LinearParams linear;
};

// A parameter the node needs from the state_dict: its key ("features.0.weight") and shape.
struct ParameterSpec {
  std::string key;
  Shape shape;
};

// What a tap name refers to: the output of a node, or the input of a node.
struct TapTarget {
  int node = 0;
  bool input = false;  // true for "NAME:input"
};

struct Graph {
  std::string architecture;
  std::vector<Node> nodes;

  int add_node(Node node);                  // appends, checks the name is new, returns its index
  int find(const std::string& name) const;  // node index, or -1

  // The value a node reads (or that a tap names): graph_input or a node index.
  int value_of(const TapTarget& target) const;

  // Resolves a tap name, with torchvision's meaning:
  //   "features.30", "layer2.0.conv1"  the output of that module;
  //   "layer4.2", "layer4", "features" the output of a container: of its last node;
  //   "NAME:input"                      the input of that module (of a container's first node).
  // Throws with the closest names when nothing matches.
  TapTarget resolve_tap(const std::string& name) const;

  // Every node's output shape for an input of shape (N, 3, H, W); throws when the input is too
  // small for the network (a pooling or convolution would produce an empty output).
  std::vector<Shape> infer_shapes(const Shape& input_shape) const;

  std::vector<ParameterSpec> parameters() const;  // in state_dict order
};

// Number of state_dict parameters a node needs (weight, bias, running statistics).
std::vector<ParameterSpec> node_parameters(const Node& node);

// Multiply-adds of one node for the given input shape (0 for data movement).
int64_t node_multiply_adds(const Node& node, const Shape& input_shape);

}  // namespace prism
