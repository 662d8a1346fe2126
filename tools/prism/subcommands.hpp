// tools/prism/subcommands.hpp: each subcommand registers itself on the CLI11 app; its callback
// does the work and throws prism::Error for anything the user can fix.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "engine/plan.hpp"

namespace prism {

// `--skip-bad` and `--max-image-pixels`, shared by run and classify.
struct ImageReadOptions {
  bool skip_bad = false;
  int64_t max_pixels = 178956970;  // tools/image/image.hpp's default_max_image_pixels
};
void add_image_read_options(CLI::App* command, ImageReadOptions& options);

// `--device cpu|cuda`, `--tf32` and `--bf16`, shared by run, classify and bench.
struct DeviceOptions {
  std::string device = "cpu";
  bool tf32 = false;
  bool bf16 = false;
  double max_memory_gib = 0.0;  // 0: 90% of the machine's memory (or of the GPU's free memory)
};
void add_device_options(CLI::App* command, DeviceOptions& options);

// Puts the choice into plan options, memory limit included. cuda is checked at once (built in, a
// GPU present) so that a run stops before any work with a message saying what to do; returns what
// runs it ("cpu", or the GPU's name).
std::string apply_device_options(const DeviceOptions& options, PlanOptions& plan_options);

void add_info_command(CLI::App& app);
void add_classify_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_evaluate_commands(CLI::App& app);  // evaluate and extract
void add_convert_commands(CLI::App& app);   // convert and fetch

}  // namespace prism
