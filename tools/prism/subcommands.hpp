// tools/prism/subcommands.hpp: each subcommand registers itself on the CLI11 app; its callback
// does the work and throws prism::Error for anything the user can fix.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "engine/plan.hpp"

namespace prism {

// `--device cpu|cuda` and `--tf32`, shared by run, classify and bench.
struct DeviceOptions {
  std::string device = "cpu";
  bool tf32 = false;
};
void add_device_options(CLI::App* command, DeviceOptions& options);

// Puts the choice into plan options. cuda is checked at once (built in, a GPU present) so that a
// run stops before any work with a message saying what to do; returns what runs it ("cpu", or
// the GPU's name).
std::string apply_device_options(const DeviceOptions& options, PlanOptions& plan_options);

void add_info_command(CLI::App& app);
void add_classify_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_evaluate_commands(CLI::App& app);  // evaluate and extract
void add_convert_commands(CLI::App& app);   // convert and fetch

}  // namespace prism
