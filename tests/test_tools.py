#!/usr/bin/python3
"""tests/test_tools.py: the converter and the `prism` command line, end to end, as a user runs
them: checkpoints in each form torch.save writes, conversion errors, `prism info` and
`prism classify` against PyTorch's own classification of the same image, and clear failures.

  tests/test_tools.py --prism build/prism --samples ../shared/data/samples
Prints one line per test and "N passed, M failed" last; exits non-zero on any failure.
"""
import argparse
import glob
import json
import os
import shutil
import sys

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


def convert(*arguments, env=None):
    return run([sys.executable, CONVERTER, *arguments], env=env)


def path(name):
    return os.path.join(WORK, name)


def small_model():
    """resnet18 with a 10-class head, like a user's fine-tuned model, BatchNorm randomised."""
    torch.manual_seed(5)
    model = converter.build_model("resnet18", 10)
    converter.randomise_batch_norm(model, torch.Generator().manual_seed(6))
    return model.eval()


def labels_file():
    name = path("labels.txt")
    with open(name, "w") as f:
        f.write("\n".join(f"thing {i}" for i in range(10)) + "\n")
    return name


def assert_file_holds(h5_path, state_dict):
    with h5py.File(h5_path, "r") as f:
        assert f.attrs["format"] == "prism-model"
        assert f.attrs["architecture"] == "resnet18"
        assert int(f.attrs["num_classes"]) == 10
        floats = {k: v for k, v in state_dict.items() if v.is_floating_point()}
        assert set(f["state_dict"].keys()) == set(floats), "keys differ"
        for key, tensor in floats.items():
            stored = f["state_dict"][key]
            assert stored.dtype == np.float32, key
            assert np.array_equal(stored[()], tensor.numpy()), key
        assert [s.decode() if isinstance(s, bytes) else s for s in f["labels"][()]][3] == "thing 3"


def save_convert_and_check(name, saved_object):
    """torch.save(saved_object), convert it, and check the file holds small_model()'s weights."""
    torch.save(saved_object, path(name + ".pth"))
    result = convert("--arch", "resnet18", "--checkpoint", path(name + ".pth"), "--labels", labels_file(),
                     "-o", path(name + ".h5"))
    assert result.returncode == 0, result.stderr
    assert_file_holds(path(name + ".h5"), small_model().state_dict())


@test
def converts_a_state_dict():
    save_convert_and_check("state", small_model().state_dict())


@test
def converts_a_whole_pickled_model():
    save_convert_and_check("whole", small_model())


@test
def converts_a_training_checkpoint_with_dataparallel_prefixes():
    state = {"module." + k: v for k, v in small_model().state_dict().items()}
    save_convert_and_check("training", {"epoch": 7, "state_dict": state, "optimizer": {}})


@test
def float16_files_are_half_the_size_and_classify_alike():
    converts_a_state_dict()
    result = convert("--arch", "resnet18", "--checkpoint", path("state.pth"), "--float16", "-o", path("half.h5"))
    assert result.returncode == 0, result.stderr
    assert os.path.getsize(path("half.h5")) < 0.6 * os.path.getsize(path("state.h5"))
    with h5py.File(path("half.h5")) as f:
        assert f["state_dict/fc.weight"].dtype == np.float16 and int(f.attrs["format_version"]) == 2
    image = os.path.join(ARGS.samples, "wolf_01.jpg")
    full, half = (json.loads(run([ARGS.prism, "classify", "--model", path(name), "--json", image]).stdout)
                  for name in ("state.h5", "half.h5"))
    for a, b in zip(full["images"][0]["top5"], half["images"][0]["top5"]):
        assert abs(a["prob"] - b["prob"]) < 2e-2, (a, b)


@test
def refuses_a_checkpoint_of_another_architecture():
    torch.save(small_model().state_dict(), path("r18.pth"))
    result = convert("--arch", "resnet34", "--checkpoint", path("r18.pth"), "-o", path("wrong.h5"))
    assert result.returncode == 1
    assert "do not fit resnet34" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(path("wrong.h5"))


@test
def refuses_a_file_that_is_not_a_checkpoint():
    with open(path("junk.pth"), "w") as f:
        f.write("not a checkpoint")
    result = convert("--arch", "resnet18", "--checkpoint", path("junk.pth"), "-o", path("junk.h5"))
    assert result.returncode == 1 and "junk.pth: cannot load the checkpoint" in result.stderr, result.stderr


@test
def pretrained_without_internet_says_what_to_do():
    env = dict(os.environ, TORCH_HOME=path("torch_home"), https_proxy="http://127.0.0.1:9",
               HTTPS_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
    result = convert("--arch", "vgg16", "--pretrained", "-o", path("vgg16.h5"), env=env)
    assert result.returncode == 1, result.stderr
    assert "cannot download the official vgg16 weights" in result.stderr, result.stderr
    assert "--checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not os.path.exists(path("vgg16.h5"))


@test
def unwritable_output_is_a_clear_error():
    torch.save(small_model().state_dict(), path("w.pth"))
    result = convert("--arch", "resnet18", "--checkpoint", path("w.pth"), "-o", "/nonexistent/folder/out.h5")
    assert result.returncode == 1 and "cannot write the model file" in result.stderr, result.stderr


@test
def info_describes_the_model():
    converts_a_state_dict()
    result = run([ARGS.prism, "info", path("state.h5"), "--input-size", "65", "47"])
    assert result.returncode == 0, result.stderr
    for text in ("architecture: resnet18", "classes:      10 (thing 0", "layer4.1.relu#2", "(1, 512, 3, 2)",
                 "parameters:   11181642"):
        assert text in result.stdout, text + " not in:\n" + result.stdout


@test
def classify_agrees_with_pytorch_on_a_photo():
    """The whole pipeline: PNG bytes, PIL-exact resize, normalisation, the network, softmax."""
    model = small_model()
    converts_a_state_dict()
    image_path = path("wolf.png")
    Image.open(os.path.join(ARGS.samples, "wolf_01.jpg")).convert("RGB").save(image_path)
    preprocess = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                     transforms.Normalize(converter.IMAGENET_MEAN, converter.IMAGENET_STD)])
    with torch.no_grad():
        probabilities = torch.softmax(model(preprocess(Image.open(image_path).convert("RGB"))[None]), 1)[0]
    top = torch.topk(probabilities, 5)

    result = run([ARGS.prism, "classify", "--model", path("state.h5"), "--json", image_path])
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    entries = document["images"][0]["top5"]
    assert document["images"][0]["file"] == image_path
    assert [e["index"] for e in entries] == top.indices.tolist(), (entries, top)
    for entry, expected in zip(entries, top.values.tolist()):
        assert abs(entry["prob"] - expected) < 1e-4, (entry, expected)
    assert entries[0]["label"] == f"thing {entries[0]['index']}"


@test
def classify_expands_quoted_globs():
    converts_a_state_dict()
    result = run([ARGS.prism, "classify", "--model", path("state.h5"), "--json", os.path.join(ARGS.samples, "w*.jpg")])
    assert result.returncode == 0, result.stderr
    files = [os.path.basename(i["file"]) for i in json.loads(result.stdout)["images"]]
    assert files == ["wolf_01.jpg", "wolf_02.jpg", "wolves.jpg"], files


@test
def classify_reads_folders_and_batches():
    converts_a_state_dict()
    single = run([ARGS.prism, "classify", "--model", path("state.h5"), "--json", "--batch", "1", ARGS.samples])
    batched = run([ARGS.prism, "classify", "--model", path("state.h5"), "--json", "--batch", "3", ARGS.samples])
    assert single.returncode == 0 and batched.returncode == 0, single.stderr + batched.stderr
    a, b = json.loads(single.stdout)["images"], json.loads(batched.stdout)["images"]
    assert len(a) == len(b) == len([f for f in os.listdir(ARGS.samples) if f.endswith(".jpg")])
    for x, y in zip(a, b):
        assert x["file"] == y["file"] and [e["index"] for e in x["top5"]] == [e["index"] for e in y["top5"]]


@test
def classify_fails_clearly_on_bad_input():
    converts_a_state_dict()
    with open(path("broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 this is no jpeg")
    cases = [
        ([ARGS.prism, "classify", "--model", path("absent.h5"), path("wolf.png")], "absent.h5: cannot open"),
        ([ARGS.prism, "classify", "--model", path("state.h5"), path("broken.jpg")], "broken.jpg: cannot read the image"),
        ([ARGS.prism, "classify", "--model", path("state.h5"), path("nothing.png")], "nothing.png: no such file"),
        ([ARGS.prism, "classify", "--model", path("state.h5"), "--batch", "0", path("wolf.png")], "--batch"),
        ([ARGS.prism, "classify", "--model", path("state.h5"), "--colour", path("wolf.png")], "--colour"),
        ([ARGS.prism, "info", path("broken.jpg")], "broken.jpg: not an HDF5 model file"),
        ([ARGS.prism, "classify", "--model", path("state.h5"), path("*.tiff")], "*.tiff: no files match"),
    ]
    for command, message in cases:
        result = run(command)
        assert result.returncode != 0, command
        assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
        assert "terminate called" not in result.stderr and "Traceback" not in result.stderr


@test
def a_float64_weight_is_named_in_the_error():
    converts_a_state_dict()
    import shutil
    shutil.copy(path("state.h5"), path("double.h5"))
    with h5py.File(path("double.h5"), "r+") as f:
        values = f["state_dict/layer3.0.conv2.weight"][()]
        del f["state_dict/layer3.0.conv2.weight"]
        f["state_dict"].create_dataset("layer3.0.conv2.weight", data=values.astype(np.float64))
    result = run([ARGS.prism, "info", path("double.h5")])
    assert result.returncode == 1
    assert "double.h5: dataset state_dict/layer3.0.conv2.weight is not float32 or float16 (float64)" in result.stderr, result.stderr


def small_vgg_file():
    """A resnet18 is small but PRISM on VGG is TorchPRISM's default; use a random vgg11 once."""
    if not os.path.exists(path("vgg11.h5")):
        result = convert("--arch", "vgg11", "--random-init", "1", "-o", path("vgg11.h5"))
        assert result.returncode == 0, result.stderr
    return path("vgg11.h5")


@test
def run_writes_every_output():
    out = path("prism_out")
    result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", out, "--batch", "3", "--split-rgb",
                  ARGS.samples])
    assert result.returncode == 0, result.stderr
    stems = sorted(os.path.splitext(f)[0] for f in os.listdir(ARGS.samples) if f.endswith(".jpg"))
    expected = {"maps.npy", "summary.json", "grid.png", "variance.svg"}
    for stem in stems:
        expected |= {f"{stem}.prism.png", f"{stem}.prism.r.png", f"{stem}.prism.g.png", f"{stem}.prism.b.png"}
    assert set(os.listdir(out)) == expected, set(os.listdir(out)) ^ expected
    maps = np.load(os.path.join(out, "maps.npy"))
    assert maps.shape == (len(stems), 224, 224, 3) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0 and maps.max() > 0.5
    # Each PNG is its map in 8 bits.
    first = np.asarray(Image.open(os.path.join(out, f"{stems[0]}.prism.png")), dtype=np.float32) / 255
    assert np.abs(first - maps[0]).max() <= 0.5 / 255 + 1e-6
    grid = Image.open(os.path.join(out, "grid.png"))
    assert grid.size[0] > 4 * 224 and grid.size[1] > 5 * 224  # inputs, maps, three split rows
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["architecture"] == "vgg11" and summary["random_weights"] is True
    assert [os.path.basename(i["file"]) for i in summary["images"]] == [s + ".jpg" for s in stems]
    assert len(summary["images"][0]["top5"]) == 5
    assert summary["capture_points"][-1] == {"name": "features.20", "shape": [len(stems), 512, 7, 7]}
    ratios = summary["explained_variance_ratio"]
    singular_values = min(len(stems) * 7 * 7, 512)  # as many as an SVD of the capture has
    assert len(ratios) == (singular_values if singular_values <= 128 else 32)  # else the leading 32
    assert ratios == sorted(ratios, reverse=True)
    assert abs(sum(ratios) - 1) < 1e-6 if len(ratios) == singular_values else 0.5 < sum(ratios) <= 1 + 1e-6
    assert summary["options"]["batch"] == 3 and summary["options"]["gradual_extrapolation"] is True
    assert "<svg" in open(os.path.join(out, "variance.svg")).read()
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]


@test
def run_batches_do_not_change_the_maps():
    """The PCA covers all images whatever --batch is, so the colours are the same."""
    outputs = []
    for batch in ("1", "4"):
        out = path(f"batch_{batch}")
        result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", out, "--batch", batch, ARGS.samples])
        assert result.returncode == 0, result.stderr
        outputs.append(np.load(os.path.join(out, "maps.npy")))
    assert np.abs(outputs[0] - outputs[1]).max() < 1e-4


@test
def run_in_bf16_stays_near_fp32_or_is_refused():
    """--bf16 rounds the convolutions' products to bfloat16: the colours move a little. A build or CPU
    without AVX512_BF16 must say so before any work."""
    maps = {}
    for name, extra in (("fp32", []), ("bf16", ["--bf16"])):
        out = path(f"precision_{name}")
        result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", out, *extra, ARGS.samples])
        if name == "bf16" and result.returncode != 0:
            assert "--bf16 needs a CPU with AVX512_BF16" in result.stderr, result.stderr
            assert not os.path.exists(out) or not os.listdir(out), os.listdir(out)
            return
        assert result.returncode == 0, result.stderr
        assert json.load(open(os.path.join(out, "summary.json")))["options"]["bf16"] is (name == "bf16")
        maps[name] = np.load(os.path.join(out, "maps.npy")).astype(np.float64)
    difference = np.abs(maps["bf16"] - maps["fp32"])
    assert 0 < difference.max() < 0.1 and difference.mean() < 0.01, (difference.max(), difference.mean())


@test
def run_options_are_checked_and_nothing_is_written_on_failure():
    with open(path("broken.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n truncated")
    with open(path("a_file"), "w") as f:
        f.write("x")
    good = os.path.join(ARGS.samples, "wolf_01.jpg")
    cases = [
        (["--components", "1,2"], good, "--components needs exactly three numbers"),
        (["--components", "0,1,2"], good, "--components takes three component numbers from 1"),
        (["--layer", "features.99"], good, "no layer named 'features.99'"),
        (["--captures", "everything"], good, "--captures"),
        ([], path("broken.png"), "broken.png: cannot read the image"),
        (["--tf32"], good, "--tf32 applies to --device cuda only"),
        (["--bf16", "--device", "cuda"], good, "--bf16 applies to --device cpu only"),
        (["--device", "tpu"], good, "--device: tpu not in {cpu,cuda}"),
    ]
    if not shutil.which("nvidia-smi"):  # no GPU here: cuda must say so before any work
        cases.append((["--device", "cuda"], good, "use --device cpu"))
    for extra, image, message in cases:
        out = path("failed_out")
        result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", out, *extra, good, image])
        assert result.returncode != 0, extra
        assert message in result.stderr, f"{message!r} not in {result.stderr!r}"
        assert not os.path.exists(out) or not os.listdir(out), os.listdir(out)
    result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", path("a_file"), good])
    assert result.returncode != 0 and "is a file, not a folder" in result.stderr, result.stderr


def bad_images():
    """Every kind of image file a folder from the internet may hold, and what prism must say."""
    import struct
    import zlib
    source = Image.open(os.path.join(ARGS.samples, "wolf_01.jpg")).convert("RGB")
    folder = path("bad_images")
    os.makedirs(folder, exist_ok=True)
    good = os.path.join(folder, "good.jpg")
    source.save(good)
    data = open(good, "rb").read()

    def write(name, content):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(content)
        return os.path.join(folder, name)

    def png_claiming(width, height):
        def chunk(kind, body):
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))

    def overfull_huffman_table(jpeg):
        """A Huffman table declaring more than 256 codes: Debian's stb_image wrote past an array on
        it (found by the image fuzzer); libjpeg refuses it."""
        table = jpeg.index(b"\xff\xc4") + 5  # marker, length, class and id, then the 16 counts
        return jpeg[:table] + bytes([200, 200]) + jpeg[table + 2:]

    regressions = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "regressions")
    bad = {
        write("empty.jpg", b""): "an empty file, not an image",
        write("huffman.jpg", overfull_huffman_table(data)): "a damaged JPEG: Bogus Huffman table definition",
        # A fill byte before the start marker: not a JPEG to PIL or to prism.
        write("huffman_fill.jpg", b"\xff" + overfull_huffman_table(data)): "cannot read the image (unknown image type)",
        # Damaged entropy-coded data on which Debian's stb_image shifted a 32-bit value by 33 (the
        # image fuzzer, in CI).
        shutil.copy(os.path.join(regressions, "stb_shift_past_32_bits.jpg"), folder): "a damaged JPEG: ",
        write("truncated.jpg", data[: len(data) // 2]): "a damaged JPEG: Premature end of JPEG file",
        write("corrupt.jpg", data[:300] + bytes(range(256)) * 8 + data[2348:]): "a damaged JPEG: ",
        write("bomb.png", png_claiming(15000, 15000)): "more than the limit of 178956970 (a decompression bomb?)",
        write("notes.jpg", b"plain text, not an image\n"): "cannot read the image",
        # Debian's stb_image overflowed an int on a PNM header's long number (the image fuzzer).
        write("huge_width.ppm", b"P6\n31 2" + b"7" * 80 + b"\n255\n" + bytes(64)):
            "a number in its PNM header is too large",
    }
    readable = {}
    source.convert("CMYK").save(os.path.join(folder, "cmyk.jpg"))
    source.save(os.path.join(folder, "progressive.jpg"), progressive=True)
    Image.fromarray(np.asarray(source.convert("L")).astype(np.uint16) * 257).save(os.path.join(folder, "grey16.png"))
    source.convert("RGBA").save(os.path.join(folder, "alpha.png"))
    source.convert("L").save(os.path.join(folder, "grey.png"))
    frames = [source.resize((64, 48)), source.resize((64, 48)).transpose(Image.FLIP_LEFT_RIGHT)]
    frames[0].save(os.path.join(folder, "animated.gif"), save_all=True, append_images=frames[1:], loop=0)
    source.resize((64, 48)).save(os.path.join(folder, "small.ppm"))
    source.convert("L").resize((64, 48)).save(os.path.join(folder, "grey.pgm"))
    for name in ("cmyk.jpg", "progressive.jpg", "grey16.png", "alpha.png", "grey.png", "animated.gif", "small.ppm",
                 "grey.pgm"):
        readable[os.path.join(folder, name)] = name
    return good, bad, readable


@test
def every_bad_image_gets_a_clear_error_and_no_output():
    good, bad, readable = bad_images()
    for image, message in bad.items():
        out = path("bad_out")
        result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", out, good, image])
        assert result.returncode == 1, (image, result.returncode, result.stderr)
        assert image in result.stderr and message in result.stderr, (image, message, result.stderr)
        assert not os.path.exists(out) or not os.listdir(out), os.listdir(out)
    empty_folder = path("empty_folder")  # a folder argument stands for its image files: none is an error
    os.makedirs(empty_folder, exist_ok=True)
    result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", path("bad_out"), good, empty_folder])
    assert result.returncode == 1 and "empty_folder: the folder holds no image files" in result.stderr, result.stderr
    # What PIL reads (CMYK and progressive JPEG, 16-bit, grey and RGBA PNG, an animated GIF, binary PPM
    # and PGM), prism reads.
    result = run([ARGS.prism, "classify", "--model", small_vgg_file(), "--json", *readable])
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["images"]) == len(readable)


@test
def skip_bad_goes_on_without_the_bad_images_and_names_them():
    good, bad, readable = bad_images()
    out = path("skip_out")
    images = [good, *bad, *readable]
    result = run([ARGS.prism, "run", "--skip-bad", "--model", small_vgg_file(), "--out", out, *images])
    assert result.returncode == 0, result.stderr
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert sorted(s["file"] for s in summary["skipped"]) == sorted(bad), summary["skipped"]
    assert len(summary["images"]) == 1 + len(readable)
    for image in bad:
        assert f"skipped {image}" in result.stderr, result.stderr
    maps = [name for name in os.listdir(out) if name.endswith(".prism.png")]
    assert len(maps) == 1 + len(readable) and np.load(os.path.join(out, "maps.npy")).shape[0] == 1 + len(readable)
    result = run([ARGS.prism, "run", "--skip-bad", "--model", small_vgg_file(), "--out", path("none_out"), *bad])
    assert result.returncode == 1 and f"none of the {len(bad)} images could be read" in result.stderr, result.stderr
    result = run([ARGS.prism, "classify", "--skip-bad", "--json", "--model", small_vgg_file(), *images])
    assert result.returncode == 0 and len(json.loads(result.stdout)["images"]) == 1 + len(readable), result.stderr


@test
def bad_weights_and_command_lines_get_clear_errors():
    good, _, _ = bad_images()
    with h5py.File(small_vgg_file(), "r") as f, h5py.File(path("nan.h5"), "w") as g:
        for name, value in f.attrs.items():
            g.attrs[name] = value
        f.copy("labels", g) if "labels" in f else None
        group = g.create_group("state_dict")
        for key, dataset in f["state_dict"].items():
            values = dataset[()]
            if key == "features.0.bias":
                values[2] = np.inf
            group.create_dataset(key, data=values)
    with open(small_vgg_file(), "rb") as f:
        head = f.read(4096)
    with open(path("cut.h5"), "wb") as f:
        f.write(head)
    with open(path("a_file"), "w") as f:
        f.write("x")
    model = small_vgg_file()
    cases = [
        (["run", "--model", path("nan.h5"), "--out", path("o1"), good], "nan.h5: state_dict/features.0.bias holds an infinity"),
        (["run", "--model", path("cut.h5"), "--out", path("o2"), good], "cut.h5"),
        (["run", "--model", good, "--out", path("o3"), good], "good.jpg: not an HDF5 model file"),
        (["run", "--model", path("absent.h5"), "--out", path("o4"), good], "absent.h5: cannot open"),
        (["run", "--model", model, "--out", path("o5"), "--frobnicate", good], "--frobnicate"),
        (["run", "--model", model, "--out", path("o6"), path("nothing*.jpg")], "nothing*.jpg: no files match"),
        (["run", "--model", model, "--out", path("o7"), path("absent.jpg")], "absent.jpg: no such file"),
        (["run", "--model", model, "--out", path("a_file"), good], "is a file, not a folder"),
        (["run", "--model", model, "--out", "/proc/prism_out", good], "/proc/prism_out: cannot create the output folder"),
        (["run", "--model", model, "--out", path("o8"), "--batch", "8", "--max-memory", "0.01", good, good],
         "use a smaller --batch"),
        (["run", "--model", model, "--out", path("o9"), "--max-image-pixels", "1000", good], "more than the limit of 1000"),
        (["classify", "--model", model, "--batch", "-3", good], "--batch"),
    ]
    for command, message in cases:
        result = run([ARGS.prism, *command])
        assert result.returncode != 0 and result.returncode < 128, (command, result.returncode)
        assert message in result.stderr, (command, message, result.stderr)
        for out in ("o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8", "o9"):
            assert not os.path.exists(path(out)) or not os.listdir(path(out)), out


@test
def unreadable_files_and_unwritable_folders_get_a_clear_error():
    """Permissions: an image and a model file nobody may read, and an output folder in a folder
    nobody may write. These tests run as root in CI, for whom permissions do not apply, so there
    prism runs as the user nobody (setpriv), from a copy of the binary in a folder nobody can reach."""
    import tempfile
    folder = tempfile.mkdtemp(prefix="prism_permissions_")
    try:
        os.chmod(folder, 0o755)
        prism = shutil.copy(ARGS.prism, os.path.join(folder, "prism"))
        good = shutil.copy(os.path.join(ARGS.samples, "coyote.jpg"), os.path.join(folder, "good.jpg"))
        model = shutil.copy(small_vgg_file(), os.path.join(folder, "model.h5"))
        locked_image = shutil.copy(good, os.path.join(folder, "locked.jpg"))
        locked_model = shutil.copy(model, os.path.join(folder, "locked.h5"))
        for file in (good, model):
            os.chmod(file, 0o644)
        for file in (locked_image, locked_model):
            os.chmod(file, 0o000)
        sealed = os.path.join(folder, "sealed")
        os.makedirs(sealed)
        os.chmod(sealed, 0o555)
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
        cases = [
            (["classify", "--model", model, good, locked_image], "locked.jpg: cannot open the file (Permission denied)"),
            (["classify", "--model", locked_model, good], "locked.h5: cannot open the file"),
            (["run", "--model", model, "--out", os.path.join(sealed, "out"), good],
             "sealed/out: cannot create the output folder (Permission denied)"),
        ]
        for command, message in cases:
            result = run([*as_nobody, prism, *command])
            assert result.returncode == 1, (command, result.returncode, result.stderr)
            assert message in result.stderr, (command, message, result.stderr)
        assert os.listdir(sealed) == []
        result = run([*as_nobody, prism, "classify", "--skip-bad", "--json", "--model", model, good, locked_image])
        assert result.returncode == 0 and "skipped " + locked_image in result.stderr, result.stderr
    finally:
        os.chmod(os.path.join(folder, "sealed"), 0o755) if os.path.isdir(os.path.join(folder, "sealed")) else None
        shutil.rmtree(folder)


@test
def model_files_that_break_the_hdf5_library_get_a_clear_error():
    """Damaged model files found by fuzzing (tests/fuzz/regressions/) on which Debian's HDF5 1.10.8
    overflows a heap buffer, uses freed memory, asks for 160 GB or loops forever. prism reads model
    files in a child process: under the sanitizers the child dies, outside them it may see garbage,
    and a child that does not answer in 10 s is stopped; either way the command says which file,
    exits 1 and writes nothing."""
    good, _, _ = bad_images()
    folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz", "regressions")
    crafted = sorted(glob.glob(os.path.join(folder, "hdf5_*.h5")))
    assert len(crafted) == 4, crafted
    for number, model in enumerate(crafted):
        out = path(f"crafted{number}")
        result = run([ARGS.prism, "run", "--model", model, "--out", out, good])
        assert result.returncode == 1, (model, result.returncode, result.stderr)
        assert f"error: {model}: " in result.stderr, (model, result.stderr)
        assert not os.path.exists(out) or not os.listdir(out), out


@test
def run_layer_and_components_choose_what_is_shown():
    out = path("layer_out")
    result = run([ARGS.prism, "run", "--model", small_vgg_file(), "--out", out, "--layer", "features.10",
                  "--components", "2,3,4", "--no-gradual-extrapolation", ARGS.samples])
    assert result.returncode == 0, result.stderr
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["capture_points"][-1]["name"] == "features.10"
    assert [c["name"] for c in summary["capture_points"]] == ["features.2:input", "features.2", "features.5", "features.10"]
    assert summary["options"]["components"] == [2, 3, 4]
    assert np.load(os.path.join(out, "maps.npy")).shape[1:] == (224, 224, 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prism", required=True)
    parser.add_argument("--samples", required=True)
    return harness.main(globals(), parser, "prism_tools_")


if __name__ == "__main__":
    sys.exit(main())
