#!/usr/bin/python3
"""bench/classify_vs_pytorch.py: forward-pass throughput of `prism classify` beside PyTorch's on
the same weights, images, batch sizes and thread count, measured in one run (these machines are
shared and noisy: compare the ratios, not the absolute numbers).

  bench/classify_vs_pytorch.py --prism build/prism --images ../shared/data/samples --threads 2

For each architecture a seeded random model is written with the converter (timing does not
depend on the values). prism's figure is the forward time it reports with --timing (plan made,
images decoded, before timing); PyTorch's is model(x) under torch.no_grad() after one warm-up
batch. Peak memory is the process's maximum resident set size.
"""
import argparse
import glob
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import torch
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import torchvision_to_h5 as converter  # noqa: E402


def prism_forward(prism, model_path, files, batch, threads):
    command = ["/usr/bin/time", "-f", "maxrss_kb=%M", prism, "classify", "--model", model_path, "--batch",
               str(batch), "--threads", str(threads), "--timing", *files]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = float(re.search(r"forward ([0-9.]+) s", result.stderr).group(1))
    rss = int(re.search(r"maxrss_kb=(\d+)", result.stderr).group(1))
    return len(files) / seconds, rss / 1024


def pytorch_forward(model, tensors, batch):
    with torch.no_grad():
        model(torch.stack(tensors[:batch]))  # warm-up
        start = time.perf_counter()
        for first in range(0, len(tensors), batch):
            model(torch.stack(tensors[first:first + batch]))
        return len(tensors) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prism", required=True)
    parser.add_argument("--images", required=True, help="a folder of JPEG images")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--count", type=int, default=16, help="images per measurement")
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    samples = sorted(glob.glob(os.path.join(args.images, "*.jpg")))
    files = [samples[i % len(samples)] for i in range(args.count)]
    preprocess = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                     transforms.Normalize(converter.IMAGENET_MEAN, converter.IMAGENET_STD)])
    tensors = [preprocess(Image.open(f).convert("RGB")) for f in files]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.count} images of 224x224")
    print(f"{'model':<10} {'batch':>5} {'prism img/s':>12} {'torch img/s':>12} {'ratio':>6} {'prism peak MiB':>15}")
    with tempfile.TemporaryDirectory() as work:
        for arch in args.archs:
            model = converter.random_model(arch, 0)
            model_path = os.path.join(work, arch + ".h5")
            converter.write_model_file(model_path, arch, model.state_dict(), None, "random (seed 0)")
            for batch in (1, 8):
                ours, rss = prism_forward(args.prism, model_path, files, batch, args.threads)
                theirs = pytorch_forward(model, tensors, batch)
                print(f"{arch:<10} {batch:>5} {ours:>12.2f} {theirs:>12.2f} {ours / theirs:>6.2f} {rss:>15.0f}",
                      flush=True)
            os.remove(model_path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"PyTorch process peak (all models above): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
