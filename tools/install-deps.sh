#!/usr/bin/env bash
# Installs everything the build, the tests and the Python converter need on a fresh
# Debian 12 (or Ubuntu) machine, from Debian's packages only. Safe to run again.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config
  libeigen3-dev libhdf5-dev libstb-dev libjpeg-dev
  catch2 libcli11-dev libfmt-dev nlohmann-json3-dev libspectra-dev zlib1g-dev dataset-fashion-mnist
  libzip-dev libcurl4-openssl-dev libssl-dev
  clang libclang-rt-dev
  python3 python3-numpy python3-torch python3-torchvision python3-h5py python3-pil
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [[ $(id -u) -eq 0 ]] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
