#!/usr/bin/python3
"""tests/fuzz/make_corpus.py OUT: seed inputs for the fuzz targets, written by Debian's torch:
small checkpoints in both formats and several forms (OUT/fuzz_checkpoint) and their pickles
(OUT/fuzz_pickle). Generated, never committed."""
import collections
import io
import os
import sys
import zipfile

import torch

out = sys.argv[1]
for target in ("fuzz_checkpoint", "fuzz_pickle", "fuzz_image", "fuzz_model_file"):
    os.makedirs(os.path.join(out, target), exist_ok=True)
torch.manual_seed(0)
state = collections.OrderedDict([("conv.weight", torch.randn(2, 1, 3, 3)), ("fc.bias", torch.randn(3)),
                                 ("bn.num_batches_tracked", torch.tensor(4))])
forms = {
    "state": state,
    "half": {k: v.half() if v.is_floating_point() else v for k, v in state.items()},
    "double": {k: v.double() if v.is_floating_point() else v for k, v in state.items()},
    "view": {"w": torch.arange(12.0).reshape(3, 4).t(), "v": torch.arange(12.0)[5:9]},
    "training": {"epoch": 1, "state_dict": state, "lr": 0.5, "flags": [True, None], "best": torch.tensor(2.5)},
    "dataparallel": {"module." + k: v for k, v in state.items()},
}
for name, value in forms.items():
    buffer = io.BytesIO()
    torch.save(value, buffer)
    data = buffer.getvalue()
    open(os.path.join(out, "fuzz_checkpoint", name + ".pth"), "wb").write(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        pickle_name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        open(os.path.join(out, "fuzz_pickle", name + ".pkl"), "wb").write(archive.read(pickle_name))
    legacy = io.BytesIO()
    torch.save(value, legacy, _use_new_zipfile_serialization=False)
    open(os.path.join(out, "fuzz_checkpoint", name + "_legacy.pth"), "wb").write(legacy.getvalue())

# Small images in every format and mode the decoder handles.
import numpy as np
from PIL import Image

rng = np.random.default_rng(0)
picture = Image.fromarray(rng.integers(0, 255, (23, 31, 3), dtype=np.uint8))
images = out + "/fuzz_image/"
picture.save(images + "rgb.png")
picture.convert("L").save(images + "grey.png")
picture.convert("RGBA").save(images + "alpha.png")
Image.fromarray(np.asarray(picture.convert("L")).astype(np.uint16) * 257).save(images + "grey16.png")
picture.save(images + "baseline.jpg", quality=60)
picture.save(images + "progressive.jpg", progressive=True)
picture.convert("CMYK").save(images + "cmyk.jpg")
picture.convert("L").save(images + "grey.jpg")
picture.save(images + "picture.bmp")
picture.save(images + "picture.gif")
picture.save(images + "picture.tga")
picture.save(images + "picture.ppm")

# Small HDF5 files shaped like model files (real ones are tens of megabytes, too large to mutate):
# the attributes, labels and a few datasets, as tools/torchvision_to_h5.py writes them.
import h5py

for name, dtype, extra in (("v1", np.float32, {}), ("v2", np.float16, {"colour": "grey", "test_accuracy": 0.9})):
    with h5py.File(os.path.join(out, "fuzz_model_file", name + ".h5"), "w") as f:
        f.attrs["format"] = "prism-model"
        f.attrs["format_version"] = np.int32(1 if name == "v1" else 2)
        f.attrs["architecture"] = "resnet18"
        f.attrs["num_classes"] = np.int64(3)
        f.attrs["input_size"] = np.array((32, 32), dtype=np.int64)
        f.attrs["mean"] = np.array((0.5, 0.5, 0.5), dtype=np.float32)
        f.attrs["std"] = np.array((0.25, 0.25, 0.25), dtype=np.float32)
        f.attrs["weights_source"] = "random (seed 0)"
        for key, value in extra.items():
            f.attrs[key] = value
        f.create_dataset("labels", data=["a", "b", "c"], dtype=h5py.string_dtype("utf-8"))
        group = f.create_group("state_dict")
        group.create_dataset("fc.weight", data=np.ones((3, 512), dtype=dtype))
        group.create_dataset("fc.bias", data=np.zeros(3, dtype=dtype))
        group.create_dataset("bn1.running_var", data=np.ones(64, dtype=dtype))
