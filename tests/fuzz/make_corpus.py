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
for target in ("fuzz_checkpoint", "fuzz_pickle"):
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
