#!/usr/bin/python3
"""tests/pytorch/make_op_reference.py: single ops run by PyTorch on awkward shapes, for
tests/test_ops_pytorch.cpp. Each case is a group OP/K holding float32 datasets: input, the
op's parameters (weight, bias, ...), output, and `params`, the op's attributes as numbers:

  conv2d:              in, out, kh, kw, sh, sw, ph, pw, dh, dw, groups, has_bias
  max_pool2d:          kh, kw, sh, sw, ph, pw, dh, dw, ceil_mode
  adaptive_avg_pool2d: out_h, out_w
  linear:              in, out
  batch_norm2d:        channels  (weight, bias, running_mean, running_var; eval mode)
meta/counts holds the number of cases per op in that order.
"""
import argparse
import os

import h5py
import numpy as np
import torch

CONV_CASES = [  # batch, in, out, h, w, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, bias
    (2, 3, 13, 17, 19, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    (1, 13, 127, 11, 9, (3, 3), (2, 2), (1, 1), (1, 1), 1, False),
    (2, 12, 18, 9, 14, (3, 3), (1, 2), (2, 1), (2, 1), 3, True),
    (1, 32, 32, 7, 7, (3, 3), (1, 1), (1, 1), (1, 1), 32, False),
    (1, 8, 4, 15, 16, (7, 5), (3, 2), (3, 0), (1, 1), 1, True),
    (3, 64, 24, 6, 5, (1, 1), (2, 2), (0, 0), (1, 1), 8, False),
    (1, 3, 64, 33, 31, (7, 7), (2, 2), (3, 3), (1, 1), 1, False),
]
POOL_CASES = [  # h, w, kernel, stride, padding, dilation, ceil_mode
    (13, 11, (2, 2), (2, 2), (0, 0), (1, 1), False),
    (13, 11, (2, 2), (2, 2), (0, 0), (1, 1), True),
    (17, 9, (3, 3), (2, 2), (1, 1), (1, 1), True),
    (10, 12, (3, 2), (1, 2), (1, 0), (2, 1), False),
    (5, 5, (2, 2), (3, 3), (1, 1), (1, 1), True),
    (112, 111, (3, 3), (2, 2), (1, 1), (1, 1), False),
]
ADAPTIVE_CASES = [(13, 11, 7, 7), (5, 3, 7, 7), (7, 7, 7, 7), (9, 14, 1, 1), (10, 6, 4, 5), (2, 1, 7, 7)]
LINEAR_CASES = [(1, 127, 13), (3, 25088, 10), (8, 64, 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.manual_seed(11)

    with h5py.File(os.path.join(args.out_dir, "ops.reference.h5"), "w") as f:
        def case(op, k, params, **tensors):
            group = f.create_group(f"{op}/{k}")
            group.create_dataset("params", data=np.array(params, dtype=np.float32))
            for name, tensor in tensors.items():
                group.create_dataset(name, data=tensor.detach().numpy().astype(np.float32))

        for k, (n, cin, cout, h, w, kernel, stride, pad, dil, groups, bias) in enumerate(CONV_CASES):
            conv = torch.nn.Conv2d(cin, cout, kernel, stride, pad, dil, groups, bias)
            x = torch.randn(n, cin, h, w)
            tensors = {"input": x, "weight": conv.weight, "output": conv(x)}
            if bias:
                tensors["bias"] = conv.bias
            case("conv2d", k, [cin, cout, *kernel, *stride, *pad, *dil, groups, int(bias)], **tensors)
        for k, (h, w, kernel, stride, pad, dil, ceil) in enumerate(POOL_CASES):
            pool = torch.nn.MaxPool2d(kernel, stride, pad, dil, ceil_mode=ceil)
            x = torch.randn(2, 13, h, w)
            case("max_pool2d", k, [*kernel, *stride, *pad, *dil, int(ceil)], input=x, output=pool(x))
        for k, (h, w, oh, ow) in enumerate(ADAPTIVE_CASES):
            x = torch.randn(2, 13, h, w)
            case("adaptive_avg_pool2d", k, [oh, ow], input=x,
                 output=torch.nn.AdaptiveAvgPool2d((oh, ow))(x))
        for k, (n, fin, fout) in enumerate(LINEAR_CASES):
            linear = torch.nn.Linear(fin, fout)
            x = torch.randn(n, fin)
            case("linear", k, [fin, fout], input=x, weight=linear.weight, bias=linear.bias, output=linear(x))
        bn = torch.nn.BatchNorm2d(13).eval()
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.3)
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.2, 3.0)
        x = torch.randn(2, 13, 7, 9)
        case("batch_norm2d", 0, [13], input=x, weight=bn.weight, bias=bn.bias, running_mean=bn.running_mean,
             running_var=bn.running_var, output=bn(x))
        counts = [len(CONV_CASES), len(POOL_CASES), len(ADAPTIVE_CASES), len(LINEAR_CASES), 1]
        f.create_dataset("meta/counts", data=np.array(counts, dtype=np.float32))


if __name__ == "__main__":
    with torch.no_grad():
        main()
