#!/usr/bin/python3
"""tools/torchvision_to_h5.py: torchvision VGG and ResNet weights to prism's HDF5 model file.

The file format is described in docs/model-format.md. Needs Debian's python3-torch,
python3-torchvision and python3-h5py (tools/install-deps.sh installs them).

  tools/torchvision_to_h5.py --arch vgg16 --pretrained -o vgg16.h5          # needs the internet
  tools/torchvision_to_h5.py --arch resnet50 --checkpoint my.pth -o my.h5     # a fine-tuned model
  tools/torchvision_to_h5.py --arch vgg16 --random-init 0 -o random.h5        # for tests and demos
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch
import torchvision

FORMAT_NAME = "prism-model"
FORMAT_VERSION = 1
FORMAT_VERSION_2 = 2  # adds float16 datasets (read back as float32) and the colour and test_accuracy attributes
ARCHITECTURES = [
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "wide_resnet50_2", "wide_resnet101_2",
    "resnext50_32x4d", "resnext101_32x8d", "resnext101_64x4d",
]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConversionError(Exception):
    """A problem the user can fix; printed as one line, exit code 1."""


def classifier_key(arch):
    return "classifier.6.weight" if arch.startswith("vgg") else "fc.weight"


def build_model(arch, num_classes):
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)


def imagenet_weights(arch):
    """torchvision's enum entry for the official ImageNet weights (its metadata works offline)."""
    return torchvision.models.get_model_weights(arch).IMAGENET1K_V1


def randomise_batch_norm(model, generator):
    """torchvision initialises BatchNorm as the identity, which would hide folding bugs."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            c = module.num_features
            with torch.no_grad():
                module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(c, generator=generator) * 0.2)
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)


def random_model(arch, seed, num_classes=1000):
    """A seeded random model: torchvision's own initialisation, then random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build_model(arch, num_classes)
    randomise_batch_norm(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def unwrap_checkpoint(obj, path):
    """A state_dict from what torch.save wrote: a state_dict, a whole model, or a training dict."""
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], (dict, torch.nn.Module)):
                return unwrap_checkpoint(obj[key], path)
    if not isinstance(obj, dict) or not any(torch.is_tensor(v) for v in obj.values()):
        raise ConversionError(f"{path}: holds no state_dict (found {type(obj).__name__})")
    # DataParallel and DistributedDataParallel prefix every key with "module.".
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def checked_state_dict(arch, state_dict, source):
    """The state_dict as float32 tensors, after checking that it fits `arch` exactly."""
    key = classifier_key(arch)
    if key not in state_dict:
        raise ConversionError(f"{source}: no {key}; is --arch {arch} right?")
    num_classes = state_dict[key].shape[0]
    model = build_model(arch, num_classes)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        raise ConversionError(f"{source}: the weights do not fit {arch}: {error}") from None
    return {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()
            if v.is_floating_point()}


def write_model_file(path, arch, state_dict, labels, weights_source,
                     input_size=(224, 224), mean=IMAGENET_MEAN, std=IMAGENET_STD, float16=False,
                     extra_attributes=None):
    """Writes the file under a temporary name and renames it, so a failure leaves nothing half done.
    float16 stores every tensor in half precision (half the size; format version 2)."""
    tensors = checked_state_dict(arch, state_dict, weights_source)
    num_classes = tensors[classifier_key(arch)].shape[0]
    if labels is not None and len(labels) != num_classes:
        raise ConversionError(f"{len(labels)} labels for {num_classes} classes")
    temporary = f"{path}.partial-{os.getpid()}"
    try:
        with h5py.File(temporary, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = np.int32(FORMAT_VERSION_2 if float16 or extra_attributes else FORMAT_VERSION)
            f.attrs["architecture"] = arch
            f.attrs["num_classes"] = np.int64(num_classes)
            f.attrs["input_size"] = np.array(input_size, dtype=np.int64)
            f.attrs["mean"] = np.array(mean, dtype=np.float32)
            f.attrs["std"] = np.array(std, dtype=np.float32)
            f.attrs["weights_source"] = weights_source
            for name, value in (extra_attributes or {}).items():
                f.attrs[name] = value
            if labels is not None:
                f.create_dataset("labels", data=list(labels), dtype=h5py.string_dtype("utf-8"))
            group = f.create_group("state_dict")
            for key, tensor in tensors.items():
                group.create_dataset(key, data=tensor.numpy().astype(np.float16 if float16 else np.float32))
        os.replace(temporary, path)
    except OSError as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise ConversionError(f"{path}: cannot write the model file: {error}") from None


def read_model_file(path):
    """A prism model file back into torchvision: (model in eval mode, the file's attributes)."""
    with h5py.File(path, "r") as f:
        state = {k: torch.from_numpy(v[()].astype(np.float32)) for k, v in f["state_dict"].items()}
        attrs = dict(f.attrs)
    model = build_model(attrs["architecture"], int(attrs["num_classes"]))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or not all(k.endswith("num_batches_tracked") for k in missing):
        raise ConversionError(f"{path}: does not fit {attrs['architecture']}: {missing} {unexpected}")
    return model.eval(), attrs


def read_labels(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", required=True, choices=ARCHITECTURES)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a file written by torch.save: a state_dict, a whole model, "
                                             "or a dict with a 'state_dict' or 'model' entry")
    source.add_argument("--pretrained", action="store_true",
                        help="torchvision's official ImageNet weights (downloads them)")
    source.add_argument("--random-init", type=int, metavar="SEED",
                        help="seeded random weights, BatchNorm statistics included (tests, demos)")
    parser.add_argument("--labels", help="a text file with one class name per line "
                                         "(default: ImageNet's when the model has 1000 classes)")
    parser.add_argument("--input-size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"))
    parser.add_argument("--float16", action="store_true", help="store tensors in half precision (half the size)")
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)

    try:
        if args.checkpoint:
            try:
                loaded = torch.load(args.checkpoint, map_location="cpu")
            except Exception as error:  # torch raises many kinds for a bad file
                raise ConversionError(f"{args.checkpoint}: cannot load the checkpoint: {error}") from None
            state_dict = unwrap_checkpoint(loaded, args.checkpoint)
            source_text = f"checkpoint {os.path.basename(args.checkpoint)}"
        elif args.pretrained:
            weights = imagenet_weights(args.arch)
            try:
                state_dict = weights.get_state_dict(progress=sys.stderr.isatty())
            except Exception as error:  # URLError, HTTPError, OSError, ... all mean "no download"
                raise ConversionError(
                    f"cannot download the official {args.arch} weights from {weights.url} ({error}). "
                    f"Without the internet: download that file on another machine, then run "
                    f"--arch {args.arch} --checkpoint FILE.pth") from None
            source_text = f"torchvision {args.arch} {weights.name}"
        else:
            state_dict = random_model(args.arch, args.random_init).state_dict()
            source_text = f"random (seed {args.random_init})"

        num_classes = state_dict[classifier_key(args.arch)].shape[0] if classifier_key(args.arch) in state_dict else 0
        if args.labels:
            labels = read_labels(args.labels)
        elif num_classes == 1000:
            labels = imagenet_weights(args.arch).meta["categories"]
        else:
            labels = None
        write_model_file(args.output, args.arch, state_dict, labels, source_text, tuple(args.input_size),
                         float16=args.float16)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}: {args.arch}, {source_text}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
