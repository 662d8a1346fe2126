"""tests/pytorch/torchprism_reference.py: TorchPRISM 2.0's algorithm in PyTorch, the reference
the C++ PRISM is tested against. It follows TorchPRISM's PRISM.py step by step (the same hooks,
an SVD of the centred activations, the same normalisation, quantisation and gradual
extrapolation), with two documented additions: each component's sign is oriented so the largest
entry of its loading vector is positive, and maps are finally resized to the input size.
Written for these tests, not copied: TorchPRISM keeps its state in class variables and hooks.
"""
import torch
from torch.nn.functional import interpolate


def torchprism_hook_modules(model):
    """What TorchPRISM's register_hooks hooks: every MaxPool2d and strided Conv2d, recursively."""
    found = []
    for module in model.children():
        if list(module.children()):
            found += torchprism_hook_modules(module)
        elif isinstance(module, torch.nn.MaxPool2d):
            found.append(module)
        elif isinstance(module, torch.nn.Conv2d) and module.stride > (1, 1):
            found.append(module)
    return found


def capture(model, batch, modules, first_input=True):
    """Runs the model; returns the logits and the excitations in the order the hooks fire,
    led by the first hooked layer's input when first_input (TorchPRISM's behaviour)."""
    excitations = []

    def hook(module, inputs, output):
        if first_input and not excitations:
            excitations.append(inputs[0].detach().clone())
        excitations.append(output.detach().clone())

    handles = [m.register_forward_hook(hook) for m in modules]
    with torch.no_grad():
        logits = model(batch)
    for handle in handles:
        handle.remove()
    return logits, excitations


def principal_maps(final, components=(0, 1, 2)):
    """U * S of the chosen components, oriented by the sign rule; and S^2 / sum S^2."""
    n, c, h, w = final.shape
    x = final.permute(0, 2, 3, 1).reshape(-1, c).double()
    x = x - x.mean(0)
    u, s, vh = torch.linalg.svd(x, full_matrices=False)
    v = vh.T
    columns = []
    for j in components:
        if j >= s.shape[0] or s[j] <= 1e-6 * s[0]:
            columns.append(torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
            continue
        sign = 1.0 if v[v[:, j].abs().argmax(), j] >= 0 else -1.0
        columns.append(u[:, j] * s[j] * sign)
    features = torch.stack(columns, 1).float()
    variance = (s ** 2 / (s ** 2).sum()).tolist()
    return features.view(n, h, w, 3).permute(0, 3, 1, 2), variance


def normalize_to_rgb(features):
    scaled = (features - features.mean()) / features.std()
    scaled = scaled.clip(-1, 1)
    return (scaled - scaled.min()) / (scaled.max() - scaled.min())


def quantize(maps, keep):
    """keep: "all", "common" (TorchPRISM's intersection) or "unique" (its difference)."""
    quantized = 0.5 * torch.round(normalize_to_rgb(maps) / 0.5)
    codes = [set(map(tuple, image.permute(1, 2, 0).reshape(-1, 3).tolist())) for image in quantized]
    common = set.intersection(*codes)
    if keep == "all":
        return quantized
    out = quantized.clone()
    for image in out:
        for y in range(image.shape[1]):
            for x in range(image.shape[2]):
                shared = tuple(image[:, y, x].tolist()) in common
                if shared != (keep == "common"):
                    image[:, y, x] = 0.0
    return out


def upsampling(maps, earlier):
    for e in earlier[::-1]:
        maps = interpolate(maps, size=(e.shape[2], e.shape[3]), mode="bilinear", align_corners=False)
        maps = maps * e.mean(dim=1, keepdim=True)
    return maps


def prism_maps(excitations, size, gradual=True, inclusive=False, exclusive=False, components=(0, 1, 2)):
    """(N, H, W, 3) maps at `size` and the explained variance ratios."""
    features, variance = principal_maps(excitations[-1], components)
    if inclusive and exclusive:
        maps = quantize(features, "all")
    elif inclusive:
        maps = quantize(features, "common")
    elif exclusive:
        maps = quantize(features, "unique")
    else:
        maps = features
    if gradual:
        maps = normalize_to_rgb(upsampling(maps, excitations[:-1]))
    elif not (inclusive or exclusive):
        maps = normalize_to_rgb(maps)
    if tuple(maps.shape[2:]) != tuple(size):
        maps = interpolate(maps, size=size, mode="bilinear", align_corners=False)
    return maps.permute(0, 2, 3, 1), variance
