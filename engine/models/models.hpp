// engine/models/models.hpp: the architectures the engine runs, built from torchvision's own
// descriptions (vgg.py's channel lists, resnet.py's block type and stage depths).
#pragma once

#include <string>
#include <vector>

#include "engine/graph.hpp"

namespace prism {

// "vgg11" ... "vgg19_bn", "resnet18" ... "resnet152", "wide_resnet50_2", "resnext50_32x4d", ...
std::vector<std::string> architecture_names();
bool is_architecture(const std::string& name);

// The graph of `architecture` with a classifier of `num_classes` outputs. Throws for an unknown
// name, listing the known ones.
Graph build_architecture(const std::string& architecture, int64_t num_classes);

// The state_dict key of the final classifier's weight, whose first dimension is the number of
// classes ("classifier.6.weight" for VGG, "fc.weight" for ResNet).
std::string classifier_weight_key(const std::string& architecture);

Graph build_vgg(const std::string& architecture, int64_t num_classes);
Graph build_resnet(const std::string& architecture, int64_t num_classes);

// Small helpers shared by the builders: each appends one node named `name` that reads `input`.
int add_conv2d(Graph& graph, const std::string& name, int input, Conv2dParams params);
int add_batch_norm2d(Graph& graph, const std::string& name, int input, int64_t channels);
int add_simple(Graph& graph, const std::string& name, OpKind kind, std::vector<int> inputs);
int add_max_pool2d(Graph& graph, const std::string& name, int input, MaxPool2dParams params);
int add_adaptive_avg_pool2d(Graph& graph, const std::string& name, int input, int64_t size);
int add_linear(Graph& graph, const std::string& name, int input, int64_t in, int64_t out);

}  // namespace prism
