// tools/prism/subcommands.hpp: each subcommand registers itself on the CLI11 app; its callback
// does the work and throws prism::Error for anything the user can fix.
#pragma once

#include <CLI/CLI.hpp>

namespace prism {

void add_info_command(CLI::App& app);
void add_classify_command(CLI::App& app);
void add_run_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_evaluate_commands(CLI::App& app);  // evaluate and extract

}  // namespace prism
