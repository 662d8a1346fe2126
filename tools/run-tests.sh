#!/usr/bin/env bash
# The test command (README.md): installs what the build and the tests need on a fresh Debian 12
# machine, builds everything, and runs the whole suite through ctest: unit tests, every op and
# every architecture against PyTorch, the image pipeline against PIL, the converters and the CLI;
# then a short run of each libFuzzer target (tools/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
(cd build && ctest --output-on-failure -j "$(nproc)")
tools/fuzz.sh 30
