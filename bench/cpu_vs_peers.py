#!/usr/bin/python3
"""bench/cpu_vs_peers.py: images/s of prism (forward + PRISM) beside PyTorch (forward + TorchPRISM's
algorithm) and ONNX Runtime (forward only), on the same seeded weights, batch sizes and thread
count, measured in one run and printed as ratios. These machines are shared and noisy (the same
binary's time moves by up to 1.4x within minutes): compare the ratios, not the absolute numbers.
So each contender runs once per round, in an order turned by one every round (3 rounds by
default); every time is the median over the rounds, and every ratio the median of the rounds'
ratios (a round's contenders run within seconds of each other). Nothing here is a test.

  bench/cpu_vs_peers.py --prism build/prism --threads 2 --batches 1 8 --archs vgg16 resnet50 [--bf16]

Each architecture is built by torchvision with seeded random weights (batch norm statistics
randomised too), written with tools/torchvision_to_h5.py for prism and exported with torch.onnx
for ONNX Runtime. Timing never depends on the values.

- prism: `prism bench`, which first checks the fast path against the plain-loop reference, then
  reports the median forward pass and PRISM step of warm runs.
- prism --bf16 (with --bf16 here): the same, with the convolutions' GEMMs in bfloat16, and the
  error that brings against fp32 on the timed batch.
- PyTorch: Debian's torch, run in a child process with OpenBLAS (LD_LIBRARY_PATH points at
  libopenblas0-openmp: the default reference BLAS makes its linear layers 30x slower; where
  OpenBLAS takes the CPU for a pre-AVX2 core, OPENBLAS_CORETYPE names the kernels it can run) and
  torch.set_num_threads(threads). Forward with TorchPRISM's hooks, then TorchPRISM's algorithm
  (tests/pytorch/torchprism_reference.py); medians of warm runs.
- ONNX Runtime 1.30 (npm onnxruntime-node, MLAS), intra-op threads = ours, sequential execution,
  all graph optimisations. Install it once, offline:
    (cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0)
  which puts it in bench/node_modules (ignored by git); --onnxruntime names another folder.
Peak memory is each process's maximum resident set size. Beyond tools/install-deps.sh it needs
`apt-get install libopenblas0-openmp nodejs npm`.
"""
import argparse
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "pytorch"))


def peak_mib(time_output):
    """The maximum resident set size /usr/bin/time reports. Measured through /usr/bin/time, not by
    the child itself: Linux carries a process's peak across exec, so a child started from this
    (large) Python process would report this process's peak."""
    return int(re.search(r"maxrss_kb=(\d+)", time_output).group(1)) / 1024


def prism_run(prism, model, batch, threads, runs, validate, bf16=False):
    command = ["/usr/bin/time", "-f", "maxrss_kb=%M", prism, "bench", "--model", model, "--batch", str(batch),
               "--threads", str(threads), "--runs", str(runs), "--profile-rows", "40"]
    if not validate:
        command.append("--skip-validation")
    if bf16:
        command.append("--bf16")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"prism bench failed:\n{result.stdout}\n{result.stderr}")
    forward = float(re.search(r"forward:\s+([0-9.]+) ms", result.stdout).group(1)) / 1e3
    prism_step = float(re.search(r"PRISM:\s+([0-9.]+) ms", result.stdout).group(1)) / 1e3
    figures = {"forward_s": forward, "prism_s": prism_step, "peak_mib": peak_mib(result.stderr), "report": result.stdout}
    error = re.search(r"^bf16 against fp32.*$", result.stdout, re.M)  # --bf16's error, when validated
    if error:
        figures["bf16_error"] = error.group(0)
    return figures


PYTORCH_CHILD = r"""
import json, statistics, sys, time
import torch
sys.path.insert(0, {tools!r}); sys.path.insert(0, {references!r})
import torchvision_to_h5 as converter
import torchprism_reference as torchprism
torch.set_num_threads({threads})
model = converter.random_model({arch!r}, 0).eval()
batch = torch.randn({batch}, 3, 224, 224, generator=torch.Generator().manual_seed(1234))
modules = torchprism.torchprism_hook_modules(model)  # max-pools and strided convolutions
forward, prism_step = [], []
for run in range({runs} + 1):
    start = time.perf_counter()
    logits, excitations = torchprism.capture(model, batch, modules)
    middle = time.perf_counter()
    with torch.no_grad():
        torchprism.prism_maps(excitations, (224, 224))
    end = time.perf_counter()
    if run:
        forward.append(middle - start)
        prism_step.append(end - middle)
print(json.dumps({{"forward_s": statistics.median(forward), "prism_s": statistics.median(prism_step)}}))
"""


# OpenBLAS's own names for the cores whose kernels predate AVX2. OpenBLAS 0.3.21 (Debian 12) takes a
# CPU it does not know for one of these: on the Xeon of these benchmarks it chose Prescott (SSE3),
# whose SGEMM ran at 32 GFLOP/s on one core against 147 with SkylakeX's kernels.
PRE_AVX2_CORES = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Sandybridge"}


def openblas_environment():
    """What the PyTorch child needs for a fair BLAS: LD_LIBRARY_PATH at libopenblas0-openmp, and
    OPENBLAS_CORETYPE naming the kernels this CPU can run where OpenBLAS takes it for an older core
    (unless the caller set one). Exits with the install command if OpenBLAS is missing: the
    reference BLAS would make the baseline's linear layers 30x slower, silently."""
    library = os.path.join(OPENBLAS, "libopenblas.so.0")
    if not os.path.exists(library):
        sys.exit(f"{library} not found: PyTorch would run on the reference BLAS; install OpenBLAS with\n"
                 "  apt-get install libopenblas0-openmp")
    environment = {"LD_LIBRARY_PATH": OPENBLAS}
    if "OPENBLAS_CORETYPE" in os.environ:
        return environment, f"OpenBLAS, OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} as given"
    openblas = ctypes.CDLL(library)
    openblas.openblas_get_corename.restype = ctypes.c_char_p
    detected = openblas.openblas_get_corename().decode()
    with open("/proc/cpuinfo") as f:
        flags = set(re.search(r"^flags\s*:(.*)$", f.read(), re.M).group(1).split())
    wanted = "SkylakeX" if "avx512f" in flags else "Haswell" if {"avx2", "fma"} <= flags else None
    if detected in PRE_AVX2_CORES and wanted:
        environment["OPENBLAS_CORETYPE"] = wanted
        return environment, f"OpenBLAS with {wanted}'s kernels (it took this CPU for {detected})"
    return environment, f"OpenBLAS, {detected}'s kernels"


def pytorch_run(arch, batch, threads, runs, blas_environment):
    code = PYTORCH_CHILD.format(tools=os.path.join(ROOT, "tools"), references=os.path.join(ROOT, "tests", "pytorch"),
                                threads=threads, arch=arch, batch=batch, runs=runs)
    environment = dict(os.environ, **blas_environment, OMP_NUM_THREADS=str(threads))
    result = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M", "/usr/bin/python3", "-c", code],
                            capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        sys.exit(f"the PyTorch baseline failed:\n{result.stderr}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]), peak_mib=peak_mib(result.stderr))


def onnxruntime_run(node_modules, onnx_path, batch, threads, runs):
    environment = dict(os.environ, NODE_PATH=node_modules)
    command = ["/usr/bin/time", "-f", "maxrss_kb=%M", "node", os.path.join(HERE, "onnxruntime_forward.js"), onnx_path,
               str(batch), "224", "224", str(threads), str(runs)]
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        sys.exit(f"ONNX Runtime failed:\n{result.stderr}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return {"forward_s": measured["median_seconds"], "peak_mib": peak_mib(result.stderr)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prism", default=os.path.join(ROOT, "build", "prism"))
    parser.add_argument("--archs", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each contender per round (their median)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every contender in turn; each figure is the median over the rounds")
    parser.add_argument("--onnxruntime", default=os.path.join(HERE, "node_modules"),
                        help="folder holding onnxruntime-node (default: bench/node_modules)")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--profiles", help="write prism's per-layer profiles to this file")
    parser.add_argument("--bf16", action="store_true",
                        help="also time prism with --bf16 (its convolutions' GEMMs in bfloat16): two more columns")
    args = parser.parse_args()
    if not os.path.isdir(os.path.join(args.onnxruntime, "onnxruntime-node")):
        sys.exit(f"{args.onnxruntime}/onnxruntime-node not found; install it with\n"
                 "  (cd bench && ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0)")

    blas_environment, blas = openblas_environment()
    print(f"PyTorch's BLAS: {blas}")

    import torch
    import torchvision_to_h5 as converter

    rows, profiles = [], []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            model = converter.random_model(arch, 0).eval()
            h5_path, onnx_path = os.path.join(folder, f"{arch}.h5"), os.path.join(folder, f"{arch}.onnx")
            converter.write_model_file(h5_path, arch, model.state_dict(), None, "random (seed 0)")
            torch.onnx.export(model, torch.randn(1, 3, 224, 224), onnx_path, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=13)
            del model
            for index, batch in enumerate(args.batches):
                # Each round runs every contender once, in an order turned by one each round, so
                # that a slow spell of the machine falls on each of them alike.
                contenders = {
                    "prism": lambda first: prism_run(args.prism, h5_path, batch, args.threads, args.runs,
                                                     validate=index == 0 and first),
                    "pytorch": lambda first: pytorch_run(arch, batch, args.threads, args.runs, blas_environment),
                    "onnxruntime": lambda first: onnxruntime_run(args.onnxruntime, onnx_path, batch, args.threads,
                                                                 args.runs),
                }
                if args.bf16:
                    contenders["bf16"] = lambda first: prism_run(args.prism, h5_path, batch, args.threads, args.runs,
                                                                 first, bf16=True)
                names = list(contenders)
                rounds = {name: [] for name in names}
                for number in range(args.rounds):
                    order = names[number % len(names):] + names[:number % len(names)]
                    for name in order:
                        rounds[name].append(contenders[name](number == 0))
                    print_row({"arch": arch, "batch": batch, "threads": args.threads,
                               **{name: figures[-1] for name, figures in rounds.items()}},
                              f"round {number + 1}: ")
                row = {"arch": arch, "batch": batch, "threads": args.threads,
                       **{name: over_rounds(figures) for name, figures in rounds.items()},
                       "ratios": ratios_over_rounds(batch, rounds)}
                profiles.append(f"== {arch} batch {batch}\n{row['prism'].pop('report')}")
                if args.bf16:
                    row["prism"]["bf16"] = row.pop("bf16")
                    profiles.append(f"== {arch} batch {batch} --bf16\n{row['prism']['bf16'].pop('report')}")
                rows.append(row)
                if args.rounds > 1:
                    print_row(row, f"median of {args.rounds} rounds: ")

    print("\nimages/s (medians over the rounds); 'prism' is forward + PRISM, so is 'PyTorch'; ONNX Runtime is forward "
          "only;\nthe ratios are the medians of each round's ratio")
    print(f"{'model':<9} {'batch':>5} {'prism':>8} {'PyTorch':>8} {'ORT':>8} {'vs PyTorch':>10} {'vs ORT':>7} "
          f"{'PRISM %':>7}  peak MiB prism / PyTorch / ORT" + (f"  {'bf16':>8} {'vs ORT':>7}" if args.bf16 else ""))
    for row in rows:
        ours, theirs, onnx, ratios = row["prism"], row["pytorch"], row["onnxruntime"], row["ratios"]
        print(f"{row['arch']:<9} {row['batch']:>5} {rate(row['batch'], ours):>8.2f} "
              f"{rate(row['batch'], theirs):>8.2f} {rate(row['batch'], onnx):>8.2f} "
              f"{ratios['pytorch']:>9.2f}x {ratios['onnxruntime']:>6.2f}x "
              f"{100 * ours['prism_s'] / ours['forward_s']:>6.1f}%  "
              f"{ours['peak_mib']:.0f} / {theirs['peak_mib']:.0f} / {onnx['peak_mib']:.0f}"
              + (f"  {rate(row['batch'], ours['bf16']):>8.2f} {ratios['bf16_onnxruntime']:>6.2f}x"
                 if args.bf16 else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.profiles:
        with open(args.profiles, "w") as f:
            f.write("\n".join(profiles))


def over_rounds(figures):
    """One contender's figures over the rounds: the median of each time, the largest peak, the rest
    (the per-layer report, the bf16 error) from the first round, which validated."""
    merged = dict(figures[0])
    for key in ("forward_s", "prism_s"):
        if key in merged:
            merged[key] = statistics.median(f[key] for f in figures)
    merged["peak_mib"] = max(f["peak_mib"] for f in figures)
    return merged


def rate(batch, figures):
    """Images/s: of prism and PyTorch forward + PRISM, of ONNX Runtime forward alone."""
    return batch / (figures["forward_s"] + figures.get("prism_s", 0.0))


def ratios_over_rounds(batch, rounds):
    """prism's images/s over each peer's, the median of the rounds' ratios: the contenders of one
    round ran within seconds of each other, those of different rounds maybe minutes apart."""
    pairs = {"pytorch": ("prism", "pytorch"), "onnxruntime": ("prism", "onnxruntime")}
    if "bf16" in rounds:
        pairs["bf16_onnxruntime"] = ("bf16", "onnxruntime")
    return {key: statistics.median(rate(batch, mine) / rate(batch, theirs)
                                   for mine, theirs in zip(rounds[ours], rounds[peer]))
            for key, (ours, peer) in pairs.items()}


def print_row(row, prefix=""):
    ours, theirs, onnx = row["prism"], row["pytorch"], row["onnxruntime"]
    print(f"{prefix}{row['arch']} batch {row['batch']}, {row['threads']} threads: "
          f"prism forward {ours['forward_s'] * 1e3:.1f} ms"
          f" + PRISM {ours['prism_s'] * 1e3:.1f} ms; PyTorch forward {theirs['forward_s'] * 1e3:.1f} ms + PRISM "
          f"{theirs['prism_s'] * 1e3:.1f} ms; ONNX Runtime forward {onnx['forward_s'] * 1e3:.1f} ms", flush=True)
    bf16 = row.get("bf16", ours.get("bf16"))
    if bf16:
        print(f"  prism --bf16: forward {bf16['forward_s'] * 1e3:.1f} ms + PRISM {bf16['prism_s'] * 1e3:.1f} "
              f"ms; {bf16.get('bf16_error', '')}", flush=True)


if __name__ == "__main__":
    main()
