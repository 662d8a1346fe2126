#!/usr/bin/env bash
# tools/fuzz.sh [SECONDS]: builds the libFuzzer targets (tests/fuzz/, with clang) and runs each for
# SECONDS (default 60) from a seed corpus that Debian's torch writes. A crash, a sanitizer report or
# a leak stops with the input saved in build-fuzz/ and a non-zero exit. The test command runs this
# briefly; run it longer by hand: tools/fuzz.sh 3600.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
cmake -S tests/fuzz -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ > /dev/null
cmake --build build-fuzz
/usr/bin/python3 tests/fuzz/make_corpus.py build-fuzz/seeds
for target in fuzz_pickle fuzz_checkpoint; do
  mkdir -p "build-fuzz/corpus/$target"
  echo "fuzzing $target for $seconds s"
  (cd build-fuzz && "./$target" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
     "corpus/$target" "seeds/$target" 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|SUMMARY" || true)
  # libFuzzer exits non-zero on any finding; the pipe above hides it, so check for the crash file.
  if compgen -G "build-fuzz/crash-*" > /dev/null || compgen -G "build-fuzz/leak-*" > /dev/null; then
    echo "fuzzing found a problem: $(ls build-fuzz/crash-* build-fuzz/leak-* 2>/dev/null)" >&2
    exit 1
  fi
done
