#!/usr/bin/env bash
# The main job (README.md): installs and builds on a fresh machine, then runs PRISM with the
# default model that ships in models/ (a ResNet-18 trained on Fashion-MNIST) on test images of
# four classes from Debian's dataset-fashion-mnist (shirts, sneakers, bags, ankle boots), writing
# maps, pictures and a summary to out/prism/. Works offline.
#
#   tools/main-job.sh                      the default model on Fashion-MNIST test images
#   tools/main-job.sh --imagenet [IMAGE...] torchvision's pretrained VGG-16 (TorchPRISM's default)
#                                          on photos (default: ../shared/data/samples); without the
#                                          internet it says so and uses seeded random weights,
#                                          which the outputs then label as random
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
tools/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
mkdir -p models out

if [[ ${1:-} != --imagenet ]]; then
  model=models/fashion_mnist_resnet18.h5
  data=/usr/share/datasets/fashion-mnist
  rm -rf out/fashion_mnist
  build/prism extract --idx-images "$data/t10k-images-idx3-ubyte.gz" --idx-labels "$data/t10k-labels-idx1-ubyte.gz" \
    --classes 6,7,8,9 --per-class 3 --model "$model" --out out/fashion_mnist
  images=(out/fashion_mnist)
else
  shift
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
fi

build/prism info "$model" > out/model.txt
build/prism run --model "$model" --out out/prism "${images[@]}"
echo "report: out/prism/grid.png (inputs above their PRISM maps), out/prism/summary.json (classes," >&2
echo "explained variance, capture points), out/prism/variance.svg, out/prism/maps.npy; out/model.txt" >&2
