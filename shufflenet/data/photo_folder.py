"""An ImageNet-layout JPEG folder made from the real photos installed packages ship.

For loader benchmarks and tests that need real JPEG statistics (sizes,
entropy, decode cost) without a download:

>>> write_photo_folder("/tmp/photos", classes=10, per_class=60)   # doctest: +SKIP
PosixPath('/tmp/photos')
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .preprocess import sample_photos


def write_photo_folder(root: str | os.PathLike, classes: int = 10, per_class: int = 60,
                       size: tuple = (500, 375), split: str = "train", seed: int = 0,
                       quality: int = 90) -> Path:
    """Write ``root/<split>/c<k>/<i>.jpg``: random crops of the sample photos resized to
    ``size`` (landscape) or its transpose (30 % portrait), JPEG ``quality``.

    Class ``k`` draws from photo ``k % len(photos)``, so a network can learn
    the labels. Idempotent: a complete folder is reused.
    """
    from PIL import Image

    root = Path(root)
    marker = root / f".complete-{split}-{classes}x{per_class}-{size[0]}x{size[1]}-{seed}"
    if marker.exists():
        return root
    photos = [img for _, img in sample_photos()]
    if not photos:
        raise DataError("no sample photos installed")
    rng = np.random.default_rng(seed)
    for k in range(classes):
        folder = root / split / f"c{k}"
        folder.mkdir(parents=True, exist_ok=True)
        photo = photos[k % len(photos)].convert("RGB")
        width, height = photo.size
        for i in range(per_class):
            s = rng.uniform(0.45, 1.0)
            w, h = max(8, int(width * s)), max(8, int(height * s))
            left, top = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            out = size if rng.random() < 0.7 else (size[1], size[0])
            img = photo.crop((left, top, left + w, top + h)).resize(out, Image.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            tmp = folder / f".{i:05d}.jpg.tmp"
            img.save(tmp, format="JPEG", quality=quality)
            os.replace(tmp, folder / f"{i:05d}.jpg")
    marker.write_text("ok\n")
    return root
