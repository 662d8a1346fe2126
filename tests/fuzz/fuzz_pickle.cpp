// tests/fuzz/fuzz_pickle.cpp: libFuzzer target for the restricted unpickler (weights/pickle.hpp).
// Any input must end in a value or a prism::Error: never a crash, a leak, undefined behaviour or
// another exception.
#include <cstddef>
#include <cstdint>

#include "engine/error.hpp"
#include "weights/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    prism::unpickle(data, size, "input");
  } catch (const prism::Error&) {
  }
  return 0;
}
