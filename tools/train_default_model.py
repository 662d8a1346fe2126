#!/usr/bin/python3
"""tools/train_default_model.py: trains the default model that ships with prism: a torchvision
resnet18 with a 10-class head on Fashion-MNIST (Debian's dataset-fashion-mnist), on the CPU.

  tools/train_default_model.py -o models/fashion_mnist_resnet18.h5 [--epochs 3] [--size 80]

Input: the 28x28 grey images resized to SIZE x SIZE (default 80: ResNet-18 then ends in 3x3
feature maps, enough for PRISM to tell parts of a garment apart, and 3 epochs train in under
an hour on 2 cores), replicated to 3 channels, normalised with the training set's mean and
std. Augmentation: random shifts of up to 3 pixels and horizontal flips. SGD with momentum and a
one-cycle learning rate, seed 0. The test accuracy is measured at the end on exactly the inputs
prism makes (PIL's bilinear resize of each test image), and recorded in the model file with the
preprocessing, so `prism run`, `classify` and `evaluate` need no options.
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchvision_to_h5 as converter  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    """The IDX format: a magic number whose last byte is the rank, the dimensions, then bytes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def pil_inputs(images, size, mean, std):
    """The test images exactly as prism prepares them: PIL bilinear resize, x / 255, normalise."""
    resized = np.stack([np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR)) for image in images])
    x = (torch.from_numpy(resized).float() / 255 - mean) / std
    return x[:, None].expand(-1, 3, -1, -1).contiguous()


def augmented_batch(images, size, mean, std, generator):
    """Random shifts (zero padding of 3 pixels, random 28x28 crop) and flips, then a resize."""
    n = images.shape[0]
    padded = F.pad(images[:, None].float() / 255, (3, 3, 3, 3))
    dx = torch.randint(0, 7, (n,), generator=generator)
    dy = torch.randint(0, 7, (n,), generator=generator)
    crops = torch.stack([padded[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(n)])
    flip = torch.rand(n, generator=generator) < 0.5
    crops[flip] = crops[flip].flip(-1)
    x = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False)
    return ((x - mean) / std).expand(-1, 3, -1, -1)


def evaluate(model, inputs, labels, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for first in range(0, len(inputs), batch):
            correct += (model(inputs[first:first + batch]).argmax(1) == labels[first:first + batch]).sum().item()
    return correct / len(inputs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--train-images", type=int, default=60000, help="fewer for a quick trial run")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)

    train_images = torch.from_numpy(read_idx(f"{DATA}/train-images-idx3-ubyte.gz").copy())[:args.train_images]
    train_labels = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))[:args.train_images]
    test_images = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz")
    test_labels = torch.from_numpy(read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    mean = (train_images.float() / 255).mean().item()
    std = (train_images.float() / 255).std().item()

    model = converter.build_model("resnet18", len(CLASSES))
    steps_per_epoch = len(train_images) // args.batch
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=0.1, epochs=args.epochs,
                                                   steps_per_epoch=steps_per_epoch)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_images), generator=generator)
        total_loss = 0.0
        for step in range(steps_per_epoch):
            index = order[step * args.batch:(step + 1) * args.batch]
            x = augmented_batch(train_images[index], args.size, mean, std, generator)
            loss = F.cross_entropy(model(x), train_labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total_loss += loss.item()
            if step % 100 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps_per_epoch} loss {loss.item():.3f} "
                      f"({time.time() - start:.0f} s)", flush=True)
        print(f"epoch {epoch + 1}: mean loss {total_loss / steps_per_epoch:.4f} ({time.time() - start:.0f} s)", flush=True)

    test_inputs = pil_inputs(test_images, args.size, mean, std)
    accuracy = evaluate(model, test_inputs, test_labels)
    minutes = (time.time() - start) / 60
    print(f"test accuracy {accuracy:.4f} on {len(test_labels)} images (PIL-resized as prism does); "
          f"{minutes:.1f} minutes", flush=True)
    source = (f"trained on Fashion-MNIST by tools/train_default_model.py (resnet18, {args.size}x{args.size}, "
              f"{args.epochs} epochs, seed 0): test accuracy {accuracy:.4f}")
    converter.write_model_file(args.output, "resnet18", model.state_dict(), CLASSES, source,
                               input_size=(args.size, args.size), mean=(mean,) * 3, std=(std,) * 3,
                               float16=True, extra_attributes={"test_accuracy": accuracy, "colour": "grey"})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
