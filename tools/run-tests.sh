#!/usr/bin/env bash
# The test command (README.md): installs what the build and the tests need on a fresh Debian 12
# machine, builds everything, and runs the whole suite through ctest: unit tests, every op and
# every architecture against PyTorch, the image pipeline against PIL, the converters and the CLI;
# then the same under AddressSanitizer and UndefinedBehaviorSanitizer with fewer models (to fit
# CI's time), and a short run of each libFuzzer target (tools/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build
(cd build && ctest --output-on-failure -j "$(nproc)")

# Under the sanitizers: every unit test, the ops, images and PRISM against their references, five
# architectures of the eighteen, and the hostile-input tests of the command line and converter.
cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPRISM_SANITIZE=ON -DPRISM_CUDA=OFF
cmake --build build-sanitize
heavy='^pytorch\.(vgg13|vgg16|vgg19|resnet34|resnet101|resnet152|wide_resnet|resnext101)|^(tools|convert|default_model\.evaluate)$'
(cd build-sanitize && ctest --output-on-failure -j "$(nproc)" -E "$heavy")
/usr/bin/python3 tests/test_tools.py --prism build-sanitize/prism --samples ../shared/data/samples --only \
  every_bad_image_gets_a_clear_error_and_no_output skip_bad_goes_on_without_the_bad_images_and_names_them \
  bad_weights_and_command_lines_get_clear_errors model_files_that_break_the_hdf5_library_get_a_clear_error \
  unreadable_files_and_unwritable_folders_get_a_clear_error
/usr/bin/python3 tests/test_convert.py --prism build-sanitize/prism --only every_form_of_checkpoint_converts_to_the_same_file \
  pickles_that_call_anything_else_are_refused_and_nothing_runs broken_archives_and_absurd_tensors_are_refused_clearly \
  architectures_are_checked_and_inferred fetch_downloads_checks_resumes_and_fails_cleanly

tools/fuzz.sh 30
