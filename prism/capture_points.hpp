// prism/capture_points.hpp: which layer outputs PRISM keeps, in forward order. The last one is
// analysed by PCA; the earlier ones guide the gradual extrapolation back to the image.
#pragma once

#include <string>
#include <vector>

#include "engine/graph.hpp"

namespace prism {

enum class CaptureSet {
  torchprism,  // TorchPRISM's hooks: the input of the first downsampling layer, then the output of
               // every MaxPool2d and every Conv2d with stride > 1 (before its BatchNorm)
  stages,      // ResNets: the stem's ReLU and each stage's output (layer1 ... layer4), ending at
               // the network's final feature map; VGGs: the same as torchprism
  automatic,   // stages for ResNets, torchprism for VGGs
};

CaptureSet parse_capture_set(const std::string& name);  // "torchprism", "stages", "auto"
const char* capture_set_name(CaptureSet set);

// Tap names (see Graph::resolve_tap) in forward order.
std::vector<std::string> capture_points(const Graph& graph, CaptureSet set);

// For `--layer TAP`: the captures that come before TAP in forward order, then TAP itself.
std::vector<std::string> capture_points_ending_at(const Graph& graph, CaptureSet set, const std::string& layer);

}  // namespace prism
