#!/usr/bin/env bash
# tools/gpu-check.sh: the one script to run on a GPU machine (../shared/DEVICE.md): the CUDA test
# suite, then the first timings against PyTorch on the same GPU. It builds nothing there. Here,
# first:
#   cmake --build build
#   ../shared/tools/device-bundle.sh .bundle build/prism build/tests/prism_cuda_tests
# then with the device tool: run "tools/gpu-check.sh" carrying .bundle. Results land in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
source .bundle/env.sh
export PYTHONUNBUFFERED=1
{ date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; grep -m1 "model name" /proc/cpuinfo
  grep -o -w -E "avx512f|avx512_bf16|amx_tile" /proc/cpuinfo | sort -u | tr "\n" " "; echo; } > "$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
timeout 180 prism_cuda_tests --durations yes > "$out/cuda-tests.txt" 2>&1
echo "prism_cuda_tests exit code: $?" >> "$out/cuda-tests.txt"
tail -4 "$out/cuda-tests.txt"
timeout 230 python3 bench/gpu_vs_pytorch.py --prism "$(command -v prism)" --tf32 --json "$out/bench.json" \
  > "$out/bench.txt" 2>&1
echo "gpu_vs_pytorch exit code: $?" >> "$out/bench.txt"
grep -E "^(GPU|vgg|resnet)|exit code|failed|Error|error|reference path" "$out/bench.txt"
