#!/usr/bin/env bash
# The main job (README.md): installs and builds on a fresh machine, gets the default model
# (torchvision's ImageNet VGG-16, TorchPRISM's default), and classifies the sample images,
# writing a report to out/. Without the internet it says so and uses seeded random weights,
# which every output then labels as random.
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
    echo "NOTE: falling back to seeded RANDOM weights: the classes below show that the pipeline runs," >&2
    echo "NOTE: not what a trained network sees. With the internet, run this script again." >&2
    model=models/vgg16-random.h5
    [[ -f $model ]] || /usr/bin/python3 tools/torchvision_to_h5.py --arch vgg16 --random-init 0 -o "$model"
  fi
fi

images=("$@")
[[ ${#images[@]} -gt 0 ]] || images=("$root/../shared/data/samples")
build/prism info "$model" > out/model.txt
build/prism classify --model "$model" --timing "${images[@]}" | tee out/classify.txt
build/prism classify --model "$model" --json "${images[@]}" > out/classify.json
echo "report: out/classify.txt, out/classify.json, out/model.txt" >&2
