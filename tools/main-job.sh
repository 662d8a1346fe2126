#!/usr/bin/env bash
# The main job (README.md): installs and builds on a fresh machine, gets the default model
# (torchvision's ImageNet VGG-16, TorchPRISM's default), and runs PRISM on the sample images,
# writing maps, pictures and a summary to out/prism/. Without the internet it says so and uses
# seeded random weights, which the outputs then label as random.
#   tools/main-job.sh [IMAGE_OR_FOLDER...]   (default: ../shared/data/samples)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build

mkdir -p models out
model=models/vgg16.h5
if [[ ! -f $model ]]; then
  if ! /usr/bin/python3 tools/torchvision_to_h5.py --arch vgg16 --pretrained -o "$model"; then
    echo "NOTE: the pretrained VGG-16 weights could not be downloaded (see the error above)." >&2
    echo "NOTE: falling back to seeded RANDOM weights: the maps and classes show that the pipeline runs," >&2
    echo "NOTE: not what a trained network sees. With the internet, run this script again." >&2
    model=models/vgg16-random.h5
    [[ -f $model ]] || /usr/bin/python3 tools/torchvision_to_h5.py --arch vgg16 --random-init 0 -o "$model"
  fi
fi

images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=("$root/../shared/data/samples")
build/prism info "$model" > out/model.txt
build/prism run --model "$model" --out out/prism "${images[@]}"
echo "report: out/prism/grid.png (inputs above their PRISM maps), out/prism/summary.json (classes," >&2
echo "explained variance, capture points), out/prism/variance.svg, out/prism/maps.npy; out/model.txt" >&2
