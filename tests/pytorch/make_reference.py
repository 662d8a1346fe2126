#!/usr/bin/python3
"""tests/pytorch/make_reference.py: PyTorch's own numbers for the C++ conformance tests.

For one architecture: a seeded random model (BatchNorm statistics and affine parameters
randomised too) written with the project's converter, a seeded random input, and PyTorch's
logits and a set of taps (fp32, CPU), in DIR/ARCH.model.h5 and DIR/ARCH.reference.h5.
ctest runs this before the test that reads them (tests/CMakeLists.txt) and removes both after.
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import torchvision_to_h5 as converter  # noqa: E402

REFERENCE_FORMAT = "prism-reference"
REFERENCE_VERSION = 1

# Full size for the two models the project is measured on; awkward odd sizes for the rest, so
# that every pooling and strided convolution sees a remainder.
INPUT_SIZES = {"vgg16": (224, 224), "resnet50": (224, 224)}
SMALL_INPUT = {"vgg": (67, 45), "resnet": (65, 47)}


def taps_for(arch):
    """Taps named as prism names them: module paths, "relu#k" for a module's k-th call,
    NAME:input for a module's input, containers (layer4) for their output."""
    if arch.startswith("vgg"):
        bn = arch.endswith("_bn")
        last_pool = {"vgg11": 20, "vgg13": 24, "vgg16": 30, "vgg19": 36}[arch.replace("_bn", "")]
        if bn:
            last_pool = {"vgg11": 28, "vgg13": 34, "vgg16": 43, "vgg19": 52}[arch.replace("_bn", "")]
        taps = ["features.0", "features.1", "features.2", f"features.{last_pool}", "avgpool",
                "classifier.0:input", "classifier.1", "classifier.6:input", "features"]
        if bn:
            taps.append("features.4")  # a pre-BN convolution deeper in
        return taps
    bottleneck = arch not in ("resnet18", "resnet34")
    strided = "layer2.0.conv2" if bottleneck else "layer2.0.conv1"
    return ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1:input", "layer1.0.relu",
            "layer1.0.relu#2", strided, "layer2.0.downsample.0", "layer2.0.downsample.1",
            "layer2.0", "layer3.1", "layer4.0.conv1", "layer4", "avgpool", "fc:input"]


def capture(model, taps, x):
    """Runs the model with forward hooks and returns {tap: tensor} and the logits."""
    modules = dict(model.named_modules())
    calls = {}
    captured = {}
    handles = []
    for tap in taps:
        name, is_input = (tap[:-len(":input")], True) if tap.endswith(":input") else (tap, False)
        name, call = (name.split("#")[0], int(name.split("#")[1])) if "#" in name else (name, 1)
        module = modules[name]

        def hook(module, inputs, output=None, tap=tap, call=call, key=(name, is_input)):
            calls[(tap, key)] = calls.get((tap, key), 0) + 1
            if calls[(tap, key)] == call:
                # clone: torchvision's ReLUs work in place and would overwrite what we keep
                captured[tap] = (inputs[0] if output is None else output).detach().clone()

        if is_input:
            handles.append(module.register_forward_pre_hook(lambda m, i, hook=hook: hook(m, i)))
        else:
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        logits = model(x)
    for handle in handles:
        handle.remove()
    return captured, logits


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=converter.ARCHITECTURES)
    parser.add_argument("--out-dir", required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    model = converter.random_model(args.arch, args.seed)
    os.makedirs(args.out_dir, exist_ok=True)
    model_path = os.path.join(args.out_dir, f"{args.arch}.model.h5")
    converter.write_model_file(model_path, args.arch, model.state_dict(), None, f"random (seed {args.seed})")

    family = "vgg" if args.arch.startswith("vgg") else "resnet"
    height, width = INPUT_SIZES.get(args.arch, SMALL_INPUT[family])
    generator = torch.Generator().manual_seed(args.seed + 2)
    x = torch.randn(args.batch, 3, height, width, generator=generator)
    taps = taps_for(args.arch)
    captured, logits = capture(model, taps, x)
    missing = [t for t in taps if t not in captured]
    if missing:
        sys.exit(f"error: taps never fired: {missing}")

    with h5py.File(os.path.join(args.out_dir, f"{args.arch}.reference.h5"), "w") as f:
        f.attrs["format"] = REFERENCE_FORMAT
        f.attrs["format_version"] = np.int32(REFERENCE_VERSION)
        f.attrs["architecture"] = args.arch
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["regenerate"] = "ctest runs tests/pytorch/make_reference.py; see tests/CMakeLists.txt"
        tensors = f.create_group("tensors")
        tensors.create_dataset("input", data=x.numpy())
        tensors.create_dataset("logits", data=logits.numpy())
        group = f.create_group("taps")
        for tap in taps:
            group.create_dataset(tap, data=captured[tap].numpy())
    print(f"{args.arch}: input {tuple(x.shape)}, {len(taps)} taps, torch {torch.__version__}")


if __name__ == "__main__":
    main()
