// engine/error.hpp: the one exception type the library throws for problems a user can cause
// (bad files, wrong shapes, unknown names). Programming errors stay assertions.
#pragma once

#include <stdexcept>
#include <string>

namespace prism {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace prism
