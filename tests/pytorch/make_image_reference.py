#!/usr/bin/python3
"""tests/pytorch/make_image_reference.py: what PIL and torchvision make of images, for the C++
image tests. Writes PNG files (lossless, so decoders cannot differ) and DIR/images.reference.h5:

  sources/NAME             the decoded RGB pixels (H, W, 3) that PIL saw
  resized/NAME@WxH         PIL's Image.resize((W, H), BILINEAR) of that source
  stretch/NAME.png         Resize((224, 224)), ToTensor, Normalize(ImageNet) of the PNG file
  center_crop/NAME.png     Resize(256), CenterCrop(224), ToTensor, Normalize of the PNG file
  jpeg/NAME                PIL's decoding of a JPEG sample, which prism's must match exactly
  formats/NAME             PIL's decoding of a file in another format or JPEG variant
"""
import argparse
import glob
import os

import h5py
import numpy as np
from PIL import Image
from torchvision import transforms

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TARGETS = [(224, 224), (13, 7), (500, 333), (224, 100), (97, 301)]


def synthetic_images(rng):
    images = {
        "noise_37x23": Image.fromarray(rng.integers(0, 256, (23, 37, 3), dtype=np.uint8)),
        "noise_640x427": Image.fromarray(rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)),
    }
    y, x = np.mgrid[0:200, 0:300]
    gradient = np.stack([x * 255 // 299, y * 255 // 199, (x + y) * 255 // 498], axis=-1).astype(np.uint8)
    images["gradient_300x200"] = Image.fromarray(gradient)
    images["grey_120x90"] = Image.fromarray(rng.integers(0, 256, (90, 120), dtype=np.uint8), mode="L")
    rgba = rng.integers(0, 256, (64, 80, 4), dtype=np.uint8)
    images["alpha_80x64"] = Image.fromarray(rgba, mode="RGBA")
    return images


def other_formats(source, rng, folder):
    """Files in the other formats users meet, written into `folder`, with the RGB pixels each should
    decode to: PIL's convert("RGB") of the file, except for 16-bit PNGs, where PIL (9.4) clamps
    every value above 255 to white; there the expectation is the top byte (value >> 8), the
    8-bit image the file shows, as stb_image makes it."""
    expected = {}
    source.convert("CMYK").save(os.path.join(folder, "cmyk.jpg"), quality=95)
    source.save(os.path.join(folder, "progressive.jpg"), progressive=True, quality=95)
    source.convert("L").save(os.path.join(folder, "grey.jpg"), quality=95)
    # Odd sizes in each chroma subsampling: the upsampling's last, partial block rows and columns.
    odd = source.crop((3, 5, 40, 58))
    for subsampling, name in ((0, "odd_444.jpg"), (1, "odd_422.jpg"), (2, "odd_420.jpg")):
        odd.save(os.path.join(folder, name), quality=90, subsampling=subsampling)
    source.convert("P", palette=Image.ADAPTIVE, colors=64).save(os.path.join(folder, "palette.png"))
    source.convert("LA").save(os.path.join(folder, "grey_alpha.png"))
    frames = [source.convert("P", palette=Image.ADAPTIVE, colors=32),
              Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).convert("P")]
    frames[0].save(os.path.join(folder, "animated.gif"), save_all=True, append_images=frames[1:], loop=0)
    for name in ("cmyk.jpg", "progressive.jpg", "grey.jpg", "odd_444.jpg", "odd_422.jpg", "odd_420.jpg", "palette.png",
                 "grey_alpha.png", "animated.gif"):
        with Image.open(os.path.join(folder, name)) as image:  # a GIF opens at its first frame
            expected[name] = np.asarray(image.convert("RGB"))
    wide = rng.integers(0, 65536, (37, 53), dtype=np.uint16)
    Image.fromarray(wide).save(os.path.join(folder, "grey16.png"))
    expected["grey16.png"] = np.repeat((wide >> 8)[:, :, None], 3, axis=2)
    return expected


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", required=True, help="folder of JPEG photos (shared/data/samples)")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    rng = np.random.default_rng(3)

    images = synthetic_images(rng)
    jpegs = sorted(glob.glob(os.path.join(args.samples, "*.jpg")))
    if not jpegs:
        raise SystemExit(f"error: no JPEG samples in {args.samples}")
    for path in jpegs:
        images[os.path.splitext(os.path.basename(path))[0]] = Image.open(path)

    stretch = transforms.Compose([transforms.Resize((224, 224)), transforms.ToTensor(),
                                  transforms.Normalize(MEAN, STD)])
    center_crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                                      transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    with h5py.File(os.path.join(args.out_dir, "images.reference.h5"), "w") as f:
        for name, image in images.items():
            png = os.path.join(args.out_dir, name + ".png")
            image.save(png)
            rgb = Image.open(png).convert("RGB")
            f.create_dataset(f"sources/{name}", data=np.asarray(rgb, dtype=np.float32))
            for width, height in TARGETS:
                resized = rgb.resize((width, height), Image.BILINEAR)
                f.create_dataset(f"resized/{name}@{width}x{height}", data=np.asarray(resized, dtype=np.float32))
            f.create_dataset(f"stretch/{name}.png", data=stretch(rgb).unsqueeze(0).numpy())
            f.create_dataset(f"center_crop/{name}.png", data=center_crop(rgb).unsqueeze(0).numpy())
        for path in jpegs:
            name = os.path.basename(path)
            f.create_dataset(f"jpeg/{name}", data=np.asarray(Image.open(path).convert("RGB"), dtype=np.float32))
        for name, expected in other_formats(images["gradient_300x200"], rng, args.out_dir).items():
            f.create_dataset(f"formats/{name}", data=expected.astype(np.float32))
    print(f"{len(images)} images, {len(TARGETS)} sizes each, into {args.out_dir}")


if __name__ == "__main__":
    main()
