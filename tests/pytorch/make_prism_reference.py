#!/usr/bin/python3
"""tests/pytorch/make_prism_reference.py: PRISM maps from the PyTorch reference
(torchprism_reference.py) for tests/test_prism_pytorch.cpp.

Writes, in --out-dir: ARCH.model.h5 (seeded random weights, BatchNorm randomised), the sample
photos as PNG (lossless, so the C++ side decodes the same pixels PyTorch used), and
ARCH.prism.h5 with, per configuration NAME@IMAGES, maps/NAME@IMAGES (N, 224, 224, 3) and
variance/NAME@IMAGES. IMAGES is 1 (wolf_01) or 4 (all samples, sorted). NAME is one of:
ge, no_ge, inclusive, exclusive, quantised, no_ge_inclusive, components=2.3.4 (any model),
layer=features.23 (VGG), stages (ResNet stage outputs instead of TorchPRISM's hooks).
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
import torchprism_reference as reference  # noqa: E402
import torchvision_to_h5 as converter  # noqa: E402


def stage_modules(model):
    return [model.relu, model.layer1, model.layer2, model.layer3, model.layer4]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", required=True, choices=["vgg16", "resnet50"])
    parser.add_argument("--samples", required=True)
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    model = converter.random_model(args.arch, 3)
    converter.write_model_file(os.path.join(args.out_dir, f"{args.arch}.model.h5"), args.arch, model.state_dict(),
                               None, "random (seed 3)")
    preprocess = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                     transforms.Normalize(converter.IMAGENET_MEAN, converter.IMAGENET_STD)])
    tensors = []
    for path in sorted(glob.glob(os.path.join(args.samples, "*.jpg"))):
        png = os.path.join(args.out_dir, os.path.splitext(os.path.basename(path))[0] + ".png")
        Image.open(path).convert("RGB").save(png)
        tensors.append(preprocess(Image.open(png).convert("RGB")))
    if len(tensors) != 4:
        raise SystemExit(f"error: expected the 4 sample photos in {args.samples}")
    batches = {4: torch.stack(tensors), 1: torch.stack(tensors[1:2])}  # wolf_01 alone

    configurations = {"ge": {}, "no_ge": {"gradual": False}, "inclusive": {"inclusive": True},
                      "exclusive": {"exclusive": True}, "quantised": {"inclusive": True, "exclusive": True},
                      "no_ge_inclusive": {"gradual": False, "inclusive": True},
                      "components=2.3.4": {"components": (1, 2, 3)}}
    hooks = reference.torchprism_hook_modules(model)
    with h5py.File(os.path.join(args.out_dir, f"{args.arch}.prism.h5"), "w") as f:
        def store(name, maps, variance):
            f.create_dataset(f"maps/{name}", data=maps.numpy().astype(np.float32))
            f.create_dataset(f"variance/{name}", data=np.array(variance, dtype=np.float32))

        for count, batch in batches.items():
            _, excitations = reference.capture(model, batch, hooks)
            for name, options in configurations.items():
                store(f"{name}@{count}", *reference.prism_maps(excitations, (224, 224), **options))
            if args.arch == "vgg16":
                # --layer features.23: the captures before it, then its output.
                _, upto = reference.capture(model, batch, hooks[:hooks.index(model.features[23]) + 1])
                store(f"layer=features.23@{count}", *reference.prism_maps(upto, (224, 224)))
            else:
                _, stages = reference.capture(model, batch, stage_modules(model), first_input=False)
                store(f"stages@{count}", *reference.prism_maps(stages, (224, 224)))
    print(f"{args.arch}: PRISM references for {len(configurations) + 1} configurations, batches of 1 and 4")


if __name__ == "__main__":
    main()
