// tests/fuzz/fuzz_checkpoint.cpp: libFuzzer target for reading a whole PyTorch checkpoint from
// bytes (weights/torch_checkpoint.hpp): the zip archive through libzip, the legacy format, the
// unpickler and the tensors rebuilt from their storages. Any input must end in a state_dict or a
// prism::Error.
#include <cstddef>
#include <cstdint>

#include "engine/error.hpp"
#include "weights/torch_checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    prism::read_torch_checkpoint_bytes(data, size, "input");
  } catch (const prism::Error&) {
  }
  return 0;
}
