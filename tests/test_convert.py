#!/usr/bin/python3
"""tests/test_convert.py: `prism convert` and `prism fetch` end to end. Checkpoints saved by
Debian's torch in every form (state_dict, training dict, DataParallel prefix, half precision and
other dtypes, non-contiguous tensors, the legacy format) convert natively to the same file as
tools/torchvision_to_h5.py, dataset for dataset and attribute for attribute, for every
architecture; hostile and broken checkpoints are refused with a clear error, never a crash and
never code run; `prism fetch` downloads from a local HTTP server on 127.0.0.1: a good download, a
checksum mismatch, a connection dropped halfway (resumed), a server that cannot resume, one that
keeps dropping, a 404 and no server at all.

  tests/test_convert.py --prism build/prism [--archs vgg11 resnet18 ...] [--samples DIR]
Prints one line per test and "N passed, M failed" last; exits non-zero on any failure.
"""
import argparse
import collections
import hashlib
import http.server
import io
import json
import os
import pickle
import struct
import sys
import threading
import zipfile

import h5py
import numpy as np
import torch
from PIL import Image
from torchvision import transforms

HERE = os.path.dirname(os.path.abspath(__file__))
CONVERTER = os.path.join(HERE, "..", "tools", "torchvision_to_h5.py")
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
sys.path.insert(0, HERE)
import torchvision_to_h5 as converter  # noqa: E402
import script_harness as harness  # noqa: E402
from script_harness import run, test  # noqa: E402

ARGS = None
WORK = None


def path(name):
    return os.path.join(WORK, name)


def prism_convert(checkpoint, output, *extra):
    return run([ARGS.prism, "convert", checkpoint, "-o", output, *extra])


def python_convert(checkpoint, output, arch, *extra):
    return run([sys.executable, CONVERTER, "--arch", arch, "--checkpoint", checkpoint, "-o", output, *extra])


def assert_same_files(native, python):
    """Same attributes (names, types, shapes, values), same datasets (names, dtypes, shapes, bits)."""
    with h5py.File(native, "r") as a, h5py.File(python, "r") as b:
        assert sorted(a.attrs) == sorted(b.attrs), (sorted(a.attrs), sorted(b.attrs))
        for name in a.attrs:
            x, y = a.attrs.get_id(name), b.attrs.get_id(name)
            assert x.shape == y.shape, (name, x.shape, y.shape)
            assert x.dtype == y.dtype or (x.dtype.kind == y.dtype.kind == "O"), (name, x.dtype, y.dtype)
            assert np.array_equal(np.asarray(a.attrs[name]), np.asarray(b.attrs[name])), (name, a.attrs[name], b.attrs[name])
        assert sorted(a) == sorted(b), (sorted(a), sorted(b))
        if "labels" in b:
            assert list(a["labels"].asstr()[()]) == list(b["labels"].asstr()[()])
        assert sorted(a["state_dict"]) == sorted(b["state_dict"])
        for key in b["state_dict"]:
            x, y = a["state_dict"][key], b["state_dict"][key]
            assert x.dtype == y.dtype and x.shape == y.shape, (key, x.dtype, y.dtype, x.shape, y.shape)
            assert np.array_equal(x[()].view(np.uint8), y[()].view(np.uint8)), key


def convert_both_and_compare(checkpoint, arch="resnet18", *extra):
    """prism convert infers the architecture; the Python converter is told it."""
    native, python = path("native.h5"), path("python.h5")
    result = prism_convert(checkpoint, native, *extra)
    assert result.returncode == 0, result.stderr
    expected = python_convert(checkpoint, python, arch, *extra)
    assert expected.returncode == 0, expected.stderr
    assert_same_files(native, python)
    return result


def small_model():
    return converter.random_model("resnet18", 3, num_classes=10)


@test
def every_architecture_converts_to_the_python_converters_file():
    for arch in ARGS.archs:
        model = converter.random_model(arch, 7, num_classes=10)
        checkpoint = path(f"{arch}.pth")
        torch.save(model.state_dict(), checkpoint)
        del model
        result = convert_both_and_compare(checkpoint, arch)
        assert f": {arch}, 10 classes" in result.stderr, result.stderr
        for name in (checkpoint, path("native.h5"), path("python.h5")):
            os.remove(name)


@test
def every_form_of_checkpoint_converts_to_the_same_file():
    state = small_model().state_dict()
    non_contiguous = collections.OrderedDict(state)
    non_contiguous["fc.weight"] = state["fc.weight"].t().contiguous().t()  # a transposed view
    non_contiguous["layer1.0.conv1.weight"] = state["layer1.0.conv1.weight"].permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    assert not non_contiguous["fc.weight"].is_contiguous()
    shared = collections.OrderedDict(state)
    both = torch.cat([state["fc.bias"], state["bn1.bias"]])  # two tensors in one storage, one at an offset
    shared["fc.bias"], shared["bn1.bias"] = both[:10], both[10:]
    forms = {
        "state_dict": state,
        "training": {"epoch": 90, "arch": "resnet18", "state_dict": state, "best_acc1": torch.tensor(71.2),
                     "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                                   "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "params": [0]}]}},
        "model_entry": {"model": state, "epoch": 3},
        "dataparallel": collections.OrderedDict(("module." + k, v) for k, v in state.items()),
        "float16": {k: v.half() if v.is_floating_point() else v for k, v in state.items()},
        "bfloat16": {k: v.bfloat16() if v.is_floating_point() else v for k, v in state.items()},
        "float64": {k: v.double() if v.is_floating_point() else v for k, v in state.items()},
        "non_contiguous": non_contiguous,
        "shared_storage": shared,
    }
    for name, saved in forms.items():
        checkpoint = path(f"{name}.pth")
        torch.save(saved, checkpoint)
        convert_both_and_compare(checkpoint)
    legacy = path("legacy.pth")
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    convert_both_and_compare(legacy)
    with open(path("labels.txt"), "w") as f:
        f.write("\n".join(f"thing {i}" for i in range(10)) + "\n\n")
    native = prism_convert(path("state_dict.pth"), path("options.h5"), "--arch", "resnet18", "--labels",
                           path("labels.txt"), "--input-size", "96", "128")
    assert native.returncode == 0, native.stderr
    python_convert(path("state_dict.pth"), path("python.h5"), "resnet18", "--labels", path("labels.txt"),
                   "--input-size", "96", "128")
    assert_same_files(path("options.h5"), path("python.h5"))


@test
def a_natively_converted_model_classifies_as_pytorch_does():
    model = small_model()
    torch.save(model.state_dict(), path("classify.pth"))
    assert prism_convert(path("classify.pth"), path("classify.h5")).returncode == 0
    image_path = path("photo.png")
    source = os.path.join(ARGS.samples, "wolf_01.jpg") if ARGS.samples else None
    if source and os.path.exists(source):
        Image.open(source).convert("RGB").save(image_path)
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (180, 240, 3), dtype=np.uint8)).save(image_path)
    preprocess = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                     transforms.Normalize(converter.IMAGENET_MEAN, converter.IMAGENET_STD)])
    with torch.no_grad():
        probabilities = torch.softmax(model(preprocess(Image.open(image_path).convert("RGB"))[None]), 1)[0]
    top = torch.topk(probabilities, 5)
    result = run([ARGS.prism, "classify", "--model", path("classify.h5"), "--json", image_path])
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)["images"][0]["top5"]
    assert [e["index"] for e in entries] == top.indices.tolist(), (entries, top)
    for entry, expected in zip(entries, top.values.tolist()):
        assert abs(entry["prob"] - expected) < 1e-4, (entry, expected)


# --- hostile and broken checkpoints ---

class CallsSystem:
    """Unpickled by Python, this would run a shell command."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def zip_checkpoint(pickle_bytes, records=None, name="archive"):
    """A checkpoint archive laid out as torch.save lays it out, around any data.pkl."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{name}/data.pkl", pickle_bytes)
        for key, data in (records or {}).items():
            archive.writestr(f"{name}/data/{key}", data)
        archive.writestr(f"{name}/version", "3\n")
    return buffer.getvalue()


def tensor_pickle(size, stride, offset=0, numel=4, storage="FloatStorage", key="0"):
    """data.pkl of {'w': tensor} with the given view of storage `key`, written opcode by opcode."""
    def unicode(text):
        raw = text.encode()
        return b"X" + struct.pack("<I", len(raw)) + raw

    def integer(value):
        return b"\x8a\x08" + struct.pack("<q", value)  # LONG1 with 8 bytes: any int64

    def tuple_of(values):
        return b"(" + b"".join(integer(v) for v in values) + b"t"

    return (b"\x80\x02}(" + unicode("w") + b"ctorch._utils\n_rebuild_tensor_v2\n((" + unicode("storage") +
            b"ctorch\n" + storage.encode() + b"\n" + unicode(key) + unicode("cpu") + integer(numel) + b"tQ" +
            integer(offset) + tuple_of(size) + tuple_of(stride) + b"\x89ccollections\nOrderedDict\n)RtRu.")


def nested_lists(depth):
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def assert_refused(data_or_path, message, name=None):
    checkpoint = data_or_path
    if isinstance(data_or_path, bytes):
        checkpoint = path(name or "hostile.pth")
        with open(checkpoint, "wb") as f:
            f.write(data_or_path)
    output = path("refused.h5")
    result = prism_convert(checkpoint, output)
    assert result.returncode == 1, (result.returncode, result.stderr)  # 1: a clean error; a signal is negative
    assert result.stderr.startswith("error: ") and checkpoint in result.stderr, result.stderr
    assert message in result.stderr, (message, result.stderr)
    assert not os.path.exists(output) and not os.path.exists(output + ".partial")
    return result.stderr


@test
def pickles_that_call_anything_else_are_refused_and_nothing_runs():
    marker = path("pwned")
    for name, payload, named in [
        ("system.pth", {"state_dict": {"w": torch.zeros(2)}, "x": CallsSystem(marker)}, "posix.system"),
        ("eval.pth", {"w": CallsEval()}, "__builtin__.eval"),  # protocol 2 names Python 2's modules
        ("numpy.pth", {"w": np.zeros(3)}, "numpy.core.multiarray._reconstruct"),
        ("module.pth", small_model(), "torchvision.models.resnet.ResNet"),
    ]:
        torch.save(payload, path(name))
        stderr = assert_refused(path(name), "refusing to load: the pickle asks for " + named)
        if name == "module.pth":
            assert "state_dict()" in stderr, stderr
    assert not os.path.exists(marker), "the pickle's code ran"
    # The same through protocol 4's STACK_GLOBAL and MEMOIZE, and in a legacy checkpoint.
    evil = pickle.dumps(CallsSystem(marker), protocol=4)
    assert_refused(zip_checkpoint(evil), "posix.system", "stack_global.pth")
    assert not os.path.exists(marker)


@test
def broken_archives_and_absurd_tensors_are_refused_clearly():
    state = {"fc.weight": torch.ones(3, 4), "fc.bias": torch.ones(3)}
    torch.save(state, path("good.pth"))
    good = open(path("good.pth"), "rb").read()
    for cut in (0, 3, 40, len(good) // 3, len(good) // 2, len(good) - 30, len(good) - 1):
        data = good[:cut]
        expected = "not a PyTorch checkpoint" if cut < 4 else "damaged or truncated"
        assert_refused(data, expected, f"cut_{cut}.pth")
    # A central directory whose record offsets point past the end of the file.
    damaged = bytearray(good)
    directory = damaged.rfind(b"PK\x01\x02")
    struct.pack_into("<I", damaged, directory + 42, len(good) + 1000)
    assert_refused(bytes(damaged), "", "outside.pth")
    floats = struct.pack("<4f", 1, 2, 3, 4)
    cases = [
        (tensor_pickle([2, 3], [3, 1]), {"0": floats}, "reaches element 5 of a storage of 4"),
        (tensor_pickle([1 << 40, 1 << 40], [1, 1]), {"0": floats}, "impossibly large"),
        (tensor_pickle([2], [-1]), {"0": floats}, "impossible size or stride"),
        (tensor_pickle([2], [1], offset=-5), {"0": floats}, "negative storage offset"),
        (tensor_pickle([4], [1], numel=1 << 40), {"0": floats}, "holds 16 bytes"),
        (tensor_pickle([4], [1], numel=1 << 61), {"0": b""}, "a storage of impossible size"),
        (tensor_pickle([4], [1]), {}, "storage record archive/data/0 is missing"),
        (tensor_pickle([4], [1], storage="ComplexFloatStorage"), {"0": floats}, "ComplexFloatStorage"),
        (nested_lists(5000), {}, "nested more than 100 deep"),
        (b"\x80\x02}q\x00(X\x01\x00\x00\x00wh\x07u.", {}, "GET of a value never PUT"),
        (b"\x80\x02}(X\xff\xff\xff\x7fw", {}, "the pickle ends early"),
        (b"\x80\x02cos\nsystem\n.", {}, "os.system"),
        (b"\x80\x02S'x'\n.", {}, "opcode 0x53"),
    ]
    for index, (pickle_bytes, records, message) in enumerate(cases):
        assert_refused(zip_checkpoint(pickle_bytes, records), message, f"case_{index}.pth")
    assert_refused(b"\x89PNG\r\n\x1a\n" + bytes(100), "not a PyTorch checkpoint", "image.pth")
    assert_refused(WORK, "a folder, not a checkpoint file")
    assert_refused(path("absent.pth"), "no such file")
    torch.save({"epoch": 3, "best": 0.5}, path("no_state.pth"))
    assert_refused(path("no_state.pth"), "holds no state_dict")
    torch.save(state, path("legacy_good.pth"), _use_new_zipfile_serialization=False)
    legacy = open(path("legacy_good.pth"), "rb").read()
    assert_refused(legacy[: len(legacy) - 7], "truncated", "legacy_cut.pth")


@test
def architectures_are_checked_and_inferred():
    torch.save(small_model().state_dict(), path("resnet18.pth"))
    assert_refused_with = prism_convert(path("resnet18.pth"), path("wrong.h5"), "--arch", "resnet34")
    assert assert_refused_with.returncode == 1 and "do not fit resnet34" in assert_refused_with.stderr
    result = prism_convert(path("resnet18.pth"), path("wrong.h5"), "--arch", "resnet9000")
    assert result.returncode == 1 and "resnet9000" in result.stderr, result.stderr
    state = small_model().state_dict()
    del state["layer4.1.conv2.weight"]
    torch.save(state, path("almost.pth"))
    assert_refused(path("almost.pth"), "the closest is resnet18 with 1 keys missing")
    torch.save({"weight": torch.ones(2)}, path("other.pth"))
    assert_refused(path("other.pth"), "not a torchvision VGG or ResNet state_dict")
    result = prism_convert(path("resnet18.pth"), os.path.join(WORK, "missing_folder", "x.h5"))
    assert result.returncode == 1 and "does not exist" in result.stderr, result.stderr


# --- prism fetch against a local server ---

class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    files = {}  # URL path -> bytes
    requests = []  # (path, Range header)

    def handle_error(self, request, client_address):
        pass  # a client that hangs up on a dropped transfer is what some tests want


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/F serves F with Range support; /drop-once/F drops the first full request halfway;
    /always-drop/F drops every request halfway; /no-range/F ignores Range and drops the first
    request halfway."""
    def log_message(self, *args):
        pass

    def do_GET(self):
        mode, _, name = self.path.strip("/").partition("/")
        asked_range = self.headers.get("Range")
        self.server.requests.append((self.path, asked_range))
        data = self.server.files.get(name)
        if data is None:
            self.send_error(404)
            return
        first_of_its_kind = sum(1 for p, _ in self.server.requests if p == self.path) == 1
        start = 0
        if asked_range and mode != "no-range":
            start = int(asked_range.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        drop = mode == "always-drop" or (mode in ("drop-once", "no-range") and first_of_its_kind)
        self.wfile.write(body[: len(body) // 2] if drop else body)
        self.wfile.flush()
        if drop:
            self.close_connection = True


def serve():
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@test
def fetch_downloads_checks_resumes_and_fails_cleanly():
    state = small_model().state_dict()
    torch.save(state, path("served.pth"))
    data = open(path("served.pth"), "rb").read()
    good_name = f"resnet18-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    wrong_name = "resnet18-00000000.pth"
    server = serve()
    server.files = {good_name: data, wrong_name: data}
    base = f"http://127.0.0.1:{server.server_address[1]}"
    folder = path("fetched")
    os.makedirs(folder)

    def fetch(mode, name, output="model.h5", extra=()):
        return run([ARGS.prism, "fetch", "resnet18", "-o", os.path.join(folder, output), "--base-url",
                    f"{base}/{mode}", "--file", name, *extra])

    result = fetch("good", good_name)
    assert result.returncode == 0, result.stderr
    python_convert(path("served.pth"), path("served_python.h5"), "resnet18")
    with h5py.File(os.path.join(folder, "model.h5"), "r") as f, h5py.File(path("served_python.h5"), "r") as g:
        assert f.attrs["weights_source"] == f"torchvision resnet18 {good_name}"
        for key in g["state_dict"]:
            assert np.array_equal(f["state_dict"][key][()], g["state_dict"][key][()]), key
    assert sorted(os.listdir(folder)) == ["model.h5"], os.listdir(folder)  # the .pth removed, nothing partial

    for mode in ("drop-once", "no-range"):
        result = fetch(mode, good_name, f"{mode}.h5", ("--keep-checkpoint",))
        assert result.returncode == 0, (mode, result.stderr)
        assert os.path.exists(os.path.join(folder, good_name))
        os.remove(os.path.join(folder, good_name))
    resumed = [r for r in server.requests if r[0].startswith("/drop-once/")]
    assert len(resumed) == 2 and resumed[1][1] == f"bytes={len(data) // 2}-", resumed

    result = fetch("always-drop", good_name, "dropping.h5")
    assert result.returncode == 1 and "run the same command again to resume" in result.stderr, result.stderr
    assert not os.path.exists(os.path.join(folder, "dropping.h5")) and not os.path.exists(os.path.join(folder, good_name))
    assert os.path.exists(os.path.join(folder, good_name + ".part"))
    result = fetch("good", good_name, "dropping.h5")  # the next run resumes the .part
    assert result.returncode == 0, result.stderr
    assert server.requests[-1][1] is not None, server.requests[-1]

    result = fetch("good", wrong_name, "mismatch.h5")
    assert result.returncode == 1 and "does not start with 00000000" in result.stderr, result.stderr
    result = fetch("good", "resnet18-12345678.pth", "absent.h5")
    assert result.returncode == 1 and "404" in result.stderr, result.stderr
    server.shutdown()
    server.server_close()
    result = fetch("good", good_name, "offline.h5")  # nothing listens there any more
    assert result.returncode == 1 and "Without the internet" in result.stderr and "prism convert" in result.stderr
    assert sorted(os.listdir(folder)) == ["drop-once.h5", "dropping.h5", "model.h5", "no-range.h5"], os.listdir(folder)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prism", required=True)
    parser.add_argument("--samples", default="")
    parser.add_argument("--archs", nargs="+", default=converter.ARCHITECTURES)
    return harness.main(globals(), parser, "prism_convert_")


if __name__ == "__main__":
    sys.exit(main())
