#!/usr/bin/python3
"""tests/pytorch/make_prism_reference.py: PRISM maps from the PyTorch reference
(torchprism_reference.py) for tests/test_prism_pytorch.cpp.

Writes, in --out-dir: NAME.model.h5 (seeded random weights of --arch, BatchNorm randomised, or a
copy of --model-file), the images as PNG (the JPEG samples decoded by PIL, or --images' PNG
files: lossless, so the C++ side decodes the same pixels PyTorch used), and NAME.prism.h5 with,
per configuration CONFIG@IMAGES, maps/CONFIG@IMAGES (N, H, W, 3) and variance/CONFIG@IMAGES.
IMAGES is 1 (the second image in name order) or all of them. CONFIG is one of:
ge, no_ge, inclusive, exclusive, quantised, no_ge_inclusive, components=2.3.4 (any model),
layer=features.23 (VGG), stages (ResNet stage outputs instead of TorchPRISM's hooks),
size=S (ResNet: all the images stretched to S x S, S chosen so that layer4 holds at least 1024
pixels in all, well over the 768 from which the PCA uses block Krylov iteration instead of
Lanczos).
"""
import math
import shutil
import argparse
import glob
import os
import sys

import h5py
import numpy as np
import torch
import torchvision
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
    parser.add_argument("--arch", choices=["vgg16", "resnet50"], help="a seeded random model of this architecture")
    parser.add_argument("--model-file", help="instead of --arch: this model file (e.g. the default model)")
    parser.add_argument("--name", help="file name prefix (default: the architecture)")
    parser.add_argument("--samples", help="a folder of JPEG photos, converted to PNG")
    parser.add_argument("--images", help="instead of --samples: a folder of PNG images, used as they are")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    if args.model_file:
        model, attrs = converter.read_model_file(args.model_file)
        name = args.name or "model"
        shutil.copy(args.model_file, os.path.join(args.out_dir, f"{name}.model.h5"))
    else:
        model = converter.random_model(args.arch, 3)
        name = args.name or args.arch
        converter.write_model_file(os.path.join(args.out_dir, f"{name}.model.h5"), args.arch, model.state_dict(),
                                   None, "random (seed 3)")
        attrs = {"input_size": (224, 224), "mean": converter.IMAGENET_MEAN, "std": converter.IMAGENET_STD}
    size = tuple(int(v) for v in attrs["input_size"])
    grey = attrs.get("colour") == "grey"
    preprocess = transforms.Compose([transforms.Resize(size), transforms.ToTensor(),
                                     transforms.Normalize([float(v) for v in attrs["mean"]],
                                                          [float(v) for v in attrs["std"]])])
    pngs = []
    if args.images:
        for path in sorted(glob.glob(os.path.join(args.images, "*.png"))):
            pngs.append(os.path.join(args.out_dir, os.path.basename(path)))
            shutil.copy(path, pngs[-1])
    else:
        for path in sorted(glob.glob(os.path.join(args.samples, "*.jpg"))):
            pngs.append(os.path.join(args.out_dir, os.path.splitext(os.path.basename(path))[0] + ".png"))
            Image.open(path).convert("RGB").save(pngs[-1])
    if len(pngs) < 2:
        raise SystemExit("error: expected at least two images")
    # The C++ test takes every PNG in the folder, in name order: one model per folder.
    tensors = []
    for png in pngs:
        image = Image.open(png).convert("L" if grey else "RGB").convert("RGB")
        tensors.append(preprocess(image))
    batches = {len(tensors): torch.stack(tensors), 1: torch.stack(tensors[1:2])}

    configurations = {"ge": {}, "no_ge": {"gradual": False}, "inclusive": {"inclusive": True},
                      "exclusive": {"exclusive": True}, "quantised": {"inclusive": True, "exclusive": True},
                      "no_ge_inclusive": {"gradual": False, "inclusive": True},
                      "components=2.3.4": {"components": (1, 2, 3)}}
    hooks = reference.torchprism_hook_modules(model)
    vgg = isinstance(model, torchvision.models.VGG)
    with h5py.File(os.path.join(args.out_dir, f"{name}.prism.h5"), "w") as f:
        def store(key, maps, variance):
            f.create_dataset(f"maps/{key}", data=maps.numpy().astype(np.float32))
            f.create_dataset(f"variance/{key}", data=np.array(variance, dtype=np.float32))

        for count, batch in batches.items():
            _, excitations = reference.capture(model, batch, hooks)
            for config, options in configurations.items():
                store(f"{config}@{count}", *reference.prism_maps(excitations, size, **options))
            if vgg:
                # --layer features.23: the captures before it, then its output.
                _, upto = reference.capture(model, batch, hooks[:hooks.index(model.features[23]) + 1])
                store(f"layer=features.23@{count}", *reference.prism_maps(upto, size))
            else:
                _, stages = reference.capture(model, batch, stage_modules(model), first_input=False)
                store(f"stages@{count}", *reference.prism_maps(stages, size))
        if not vgg:
            # layer4 is 1/32 of the input on each side: N * (S / 32)^2 >= 1024.
            side = 32 * math.ceil(math.sqrt(1024 / len(pngs)))
            wide = transforms.Compose([transforms.Resize((side, side)), *preprocess.transforms[1:]])
            batch = torch.stack([wide(Image.open(png).convert("L" if grey else "RGB").convert("RGB")) for png in pngs])
            _, excitations = reference.capture(model, batch, hooks)
            store(f"size={side}@{len(pngs)}", *reference.prism_maps(excitations, (side, side)))
    print(f"{name}: PRISM references for {len(configurations) + 1} configurations, batches of 1 and {len(pngs)}")


if __name__ == "__main__":
    main()
