// tests/test_cuda_main.cpp: prism_cuda_tests' main. Without a GPU (or without the CUDA backend
// built in) it says why and exits with 77, which ctest reports as skipped, never as passed.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdio>

#include "engine/cuda/runtime.hpp"
#include "engine/error.hpp"

int main(int argc, char** argv) {
  try {
    std::printf("CUDA tests on %s\n", prism::require_cuda().c_str());
  } catch (const prism::Error& error) {
    std::printf("skipped: %s\n", error.what());
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
