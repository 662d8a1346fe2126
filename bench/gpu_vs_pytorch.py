#!/usr/bin/env python3
"""bench/gpu_vs_pytorch.py: milliseconds and images/s of prism on the GPU (forward + PRISM) beside
PyTorch on the same GPU (forward + TorchPRISM's algorithm), same seeded weights, same batches,
measured in one run and printed as ratios. Runs on the GPU machine (its python3 has torch,
torchvision and h5py); tools/gpu-check.sh calls it. Nothing here is a test.

  bench/gpu_vs_pytorch.py --prism build/prism --archs vgg16 resnet50 --batches 1 64 --json out.json

- prism: `prism bench --device cuda` (for each model's first batch it first checks the GPU's
  logits against the CPU reference path), median of warm runs; times include the input going up
  and the maps coming down.
- PyTorch: fp32 with TF32 off, cudnn.benchmark on (the tuned figures a careful user gets), CUDA
  events around the forward pass with TorchPRISM's hooks and around its PRISM step, median of
  warm runs; peak memory from torch.cuda.max_memory_allocated. As for prism, the forward pass
  starts from the images in host memory and PRISM ends with the maps there: the question is
  images in, maps out.
With --tf32 both sides also run with TF32 allowed.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "pytorch"))


def prism_run(prism, model_path, batch, runs, tf32, validate):
    command = [prism, "bench", "--device", "cuda", "--model", model_path, "--batch", str(batch), "--runs", str(runs),
               "--warmup", "3", "--profile-rows", "15"]
    if tf32:
        command.append("--tf32")
    if not validate:  # the plain-loop reference takes seconds per image: once per model is enough
        command.append("--skip-validation")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:  # reported, and the other rows still run: device time is scarce
        print(f"prism bench failed ({' '.join(command)}):\n{result.stdout}\n{result.stderr}", flush=True)
        return None
    forward = float(re.search(r"forward:\s+([0-9.]+) ms", result.stdout).group(1))
    prism_step = float(re.search(r"PRISM:\s+([0-9.]+) ms", result.stdout).group(1))
    peak = float(re.search(r"GPU memory: peak allocated ([0-9.]+) MiB", result.stdout).group(1))
    validation = re.search(r"within ([0-9.e+-]+) of the reference", result.stdout)
    if validation:  # the logits' largest difference from the plain-loop reference, of their scale
        print(f"{os.path.basename(model_path)} {'TF32' if tf32 else 'fp32'}: logits within {validation.group(1)} of "
              "the reference path", flush=True)
    return {"forward_ms": forward, "prism_ms": prism_step, "peak_mib": peak, "report": result.stdout,
            "validation": float(validation.group(1)) if validation else None}


def pytorch_on_gpu(model, batch, tf32):
    """The model on the GPU as a careful user runs it (cuDNN picks its algorithms, TF32 as asked),
    and the seeded images, in host memory."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    images = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(1234))
    return model.to(torch.device("cuda")), images


def pytorch_run(model, batch, runs, tf32):
    import torch
    import torchprism_reference as torchprism
    device = torch.device("cuda")
    model, images = pytorch_on_gpu(model, batch, tf32)
    modules = torchprism.torchprism_hook_modules(model)
    torch.cuda.reset_peak_memory_stats()
    forward, prism_step = [], []
    for run in range(runs + 3):
        start, middle, end = (torch.cuda.Event(enable_timing=True) for _ in range(3))
        start.record()
        _, excitations = torchprism.capture(model, images.to(device), modules)
        middle.record()
        with torch.no_grad():
            maps, _ = torchprism.prism_maps(excitations, (224, 224))
            maps.cpu()
        end.record()
        torch.cuda.synchronize()
        if run >= 3:
            forward.append(start.elapsed_time(middle))
            prism_step.append(middle.elapsed_time(end))
    return {"forward_ms": statistics.median(forward), "prism_ms": statistics.median(prism_step),
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20}


def pytorch_conv_times(model, batch, runs=10):
    """Milliseconds of each convolution (cuDNN, fp32, cudnn.benchmark), median of warm runs, timed by
    CUDA events from module hooks: to set beside `prism bench`'s per-step profile."""
    import torch
    model, images = pytorch_on_gpu(model, batch, tf32=False)
    images = images.to(torch.device("cuda"))
    events, times, handles = {}, {}, []
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            def before(module, inputs, name=name):
                events[name] = [torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)]
                events[name][0].record()

            def after(module, inputs, output, name=name):
                events[name][1].record()
            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    with torch.no_grad():
        for run in range(runs + 3):
            model(images)
            torch.cuda.synchronize()
            if run >= 3:
                for name, (start, end) in events.items():
                    times.setdefault(name, []).append(start.elapsed_time(end))
    for handle in handles:
        handle.remove()
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prism", default=os.path.join(ROOT, "build", "prism"))
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tf32", action="store_true", help="also measure both sides with TF32 allowed")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()

    import torch
    import torchvision_to_h5 as converter
    print(f"GPU: {torch.cuda.get_device_name()}, PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            model = converter.random_model(arch, 0).eval()
            h5_path = os.path.join(folder, f"{arch}.h5")
            converter.write_model_file(h5_path, arch, model.state_dict(), None, "random (seed 0)")
            for index, batch in enumerate(args.batches):
                for tf32 in [False, True] if args.tf32 else [False]:
                    ours = prism_run(args.prism, h5_path, batch, args.runs, tf32, validate=index == 0)
                    theirs = pytorch_run(model, batch, args.runs, tf32)
                    row = {"arch": arch, "batch": batch, "tf32": tf32, "prism": ours, "pytorch": theirs}
                    rows.append(row)
                    if ours is None:
                        continue
                    ours_total = ours["forward_ms"] + ours["prism_ms"]
                    theirs_total = theirs["forward_ms"] + theirs["prism_ms"]
                    print(f"{arch} batch {batch}{' TF32' if tf32 else ''}: prism {ours['forward_ms']:.2f} + "
                          f"{ours['prism_ms']:.2f} = {ours_total:.2f} ms ({batch / ours_total * 1e3:.1f} images/s, "
                          f"peak {ours['peak_mib']:.0f} MiB); "
                          f"PyTorch {theirs['forward_ms']:.2f} + {theirs['prism_ms']:.2f} = {theirs_total:.2f} ms "
                          f"({batch / theirs_total * 1e3:.1f} images/s, peak {theirs['peak_mib']:.0f} MiB); "
                          f"ours {theirs_total / ours_total:.2f}x", flush=True)
            conv_times = pytorch_conv_times(model, max(args.batches))
            slowest = sorted(conv_times.items(), key=lambda item: -item[1])[:8]
            print(f"{arch} batch {max(args.batches)}, PyTorch's convolutions (fp32, cuDNN): {sum(conv_times.values()):.2f} ms "
                  f"in all; slowest: " + ", ".join(f"{name} {ms:.2f}" for name, ms in slowest), flush=True)
            rows.append({"arch": arch, "batch": max(args.batches), "pytorch_conv_ms": conv_times})
            model.cpu()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
