// weights/imagenet_labels.hpp: ImageNet's 1000 class names in torchvision's order, for models
// converted without Python (tools/make_imagenet_labels.py generates the list).
#pragma once

#include <string>
#include <vector>

namespace prism {

const std::vector<std::string>& imagenet_labels();

}  // namespace prism
