#!/usr/bin/python3
"""tests/test_default_model.py: the shipped Fashion-MNIST model, on the whole 10,000-image test
set from Debian's dataset-fashion-mnist: `prism evaluate` predicts what PyTorch predicts with the
same weights (top-1 identical except where PyTorch's two best logits are within 1e-5) and
reaches exactly the accuracy the training script recorded in the file.

  tests/test_default_model.py --prism build/prism --model models/fashion_mnist_resnet18.h5
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import torchvision_to_h5 as converter  # noqa: E402
import train_default_model as training  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prism", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--limit", type=int, default=10000)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    data = training.DATA
    model, attrs = converter.read_model_file(args.model)
    size = int(attrs["input_size"][0])
    images = training.read_idx(f"{data}/t10k-images-idx3-ubyte.gz")[:args.limit]
    labels = training.read_idx(f"{data}/t10k-labels-idx1-ubyte.gz")[:args.limit]
    inputs = training.pil_inputs(images, size, float(attrs["mean"][0]), float(attrs["std"][0]))
    with torch.no_grad():
        logits = torch.cat([model(inputs[i:i + 500]) for i in range(0, len(inputs), 500)])
    torch_predictions = logits.argmax(1).numpy()
    top2 = logits.topk(2, dim=1).values
    close_call = (top2[:, 0] - top2[:, 1]).abs().numpy() < 1e-5

    result = subprocess.run([args.prism, "evaluate", "--model", args.model, "--json", "--limit", str(args.limit),
                             "--idx-images", f"{data}/t10k-images-idx3-ubyte.gz",
                             "--idx-labels", f"{data}/t10k-labels-idx1-ubyte.gz"],
                            capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    ours = np.array(report["predictions"])
    disagree = np.flatnonzero((ours != torch_predictions) & ~close_call)
    passed = failed = 0

    def check(condition, text):
        nonlocal passed, failed
        print(("ok   " if condition else "FAIL ") + text)
        passed, failed = passed + bool(condition), failed + (not condition)

    check(len(disagree) == 0, f"top-1 identical to PyTorch on {len(ours)} images "
                              f"({int(close_call.sum())} close calls allowed, {len(disagree)} disagreements)")
    torch_accuracy = float((torch_predictions == labels).mean())
    check(abs(report["accuracy"] - torch_accuracy) <= close_call.sum() / len(ours),
          f"accuracy {report['accuracy']:.4f}, PyTorch {torch_accuracy:.4f}")
    if args.limit == 10000:
        recorded = float(attrs["test_accuracy"])
        check(round(report["accuracy"] * 10000) == round(recorded * 10000),
              f"accuracy equals the training script's record {recorded:.4f}")
    confusion = np.array(report["confusion"])
    check(confusion.sum() == len(ours) and np.trace(confusion) == report["correct"], "confusion matrix adds up")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
