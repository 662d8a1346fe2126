// tests/fuzz/fuzz_model_file.cpp: libFuzzer target for the HDF5 model loader (read_model_file:
// the format, its attributes, the architecture, every dataset's type and shape, the weights'
// values). HDF5 reads from a file, so each input is written to one first. The HDF5 library itself
// is Debian's and not instrumented: this fuzzes how prism uses it, and whether it survives what
// HDF5 reports.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/error.hpp"
#include "weights/model_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/prism_fuzz_model_" + std::to_string(getpid()) + ".h5";
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return 0;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    prism::read_model_file(path);
  } catch (const prism::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
