// tests/fuzz/fuzz_model_file_isolated.cpp: libFuzzer target for the model loader as the command
// line runs it (read_model_file_isolated: HDF5 in a forked child, the model back through a socket).
// Debian's HDF5 has memory errors of its own on damaged files (tests/fuzz/regressions/), which
// fuzz_model_file finds in-process; here they must cost only the child. A crash, a sanitizer
// report or a leak in this process (the parent: its protocol, its checks, its error paths)
// is a finding; the child's death is an expected outcome, not one.
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/error.hpp"
#include "weights/model_file.hpp"

namespace {

// What the child runs: the reader, with the default actions on fatal signals and no libFuzzer
// death callback, as in the command-line tool, so that a crash in the child ends the child
// instead of being reported (and saved) by the fuzzer's handlers it inherited.
prism::Model read_as_the_tool_does(const std::string& path, prism::ValuesInFile* left_in_file) {
  __sanitizer_set_death_callback(nullptr);
  for (const int signal : {SIGSEGV, SIGBUS, SIGABRT, SIGILL, SIGFPE}) std::signal(signal, SIG_DFL);
  return prism::read_model_file(path, left_in_file);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/prism_fuzz_isolated_" + std::to_string(getpid()) + ".h5";
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return 0;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  try {
    prism::read_model_file_isolated(path, read_as_the_tool_does);
  } catch (const prism::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
