// tools/prism/main.cpp: the `prism` command line: one subcommand per file, errors reported in
// one line with a non-zero exit code.
#include <malloc.h>

#include <fmt/core.h>
#include <CLI/CLI.hpp>

#include "engine/error.hpp"
#include "engine/tensor.hpp"
#include "tools/prism/subcommands.hpp"

int main(int argc, char** argv) {
  // Freed memory stays in the process for the next batch: by default glibc hands blocks of a few
  // MiB back to the kernel on free and gets them again as fresh pages, and every page then
  // faults and is zeroed once more (on the VMs we measured, about 7% of a ResNet-50 batch).
  // Larger tensors get mappings of their own (engine/tensor.cpp).
  mallopt(M_MMAP_THRESHOLD, static_cast<int>(prism::malloc_tensor_bytes_below));
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  CLI::App app{"prism: a CNN runtime for torchvision's VGG and ResNet models, with PRISM built in"};
  app.require_subcommand(1);
  prism::add_info_command(app);
  prism::add_classify_command(app);
  prism::add_run_command(app);
  prism::add_bench_command(app);
  prism::add_evaluate_commands(app);
  prism::add_convert_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  } catch (const prism::Error& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  } catch (const std::exception& error) {
    fmt::print(stderr, "error: {}\n", error.what());
    return 1;
  }
  return 0;
}
