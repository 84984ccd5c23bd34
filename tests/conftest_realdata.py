"""A small real-photo dataset that is not the demo set, and a network trained on it.

Three texture classes from the real photographs scikit-image ships (grass,
gravel, brick -- grey-level photos, none of them among the stand-in photos
the toolchain falls back on), each crop with its own position, scale, flip,
brightness and a hard contrast: 80 train / 40 val images per class at 80 px, written
as JPEGs in the ImageNet folder layout (``root/{train,val}/<class>/*.jpg``).
Train and val crops are different draws, so no image appears in both.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")

CLASSES = {"grass": ("grass",), "gravel": ("gravel",), "brick": ("brick",)}
PER_CLASS = {"train": 80, "val": 40}
SIDE = 80
TRAIN_SIZE = 64


def _photos(names):
    import skimage.data as skd
    from PIL import Image

    return [Image.fromarray(getattr(skd, n)()).convert("RGB") for n in names]


def write_dataset(root) -> Path:
    """Write the dataset under ``root`` (idempotent); returns ``root``."""
    from PIL import Image, ImageEnhance

    root = Path(root)
    marker = root / ".complete"
    if marker.exists():
        return root
    for k, (label, names) in enumerate(CLASSES.items()):
        photos = _photos(names)
        rng = np.random.default_rng(100 + k)
        crops = []
        for i in range(PER_CLASS["train"] + PER_CLASS["val"]):
            photo = photos[i % len(photos)]
            w, h = photo.size
            s = rng.uniform(0.15, 0.4)
            cw, ch = int(min(w, h) * s), int(min(w, h) * s)
            left = int(rng.integers(0, w - cw + 1))
            top = int(rng.integers(0, h - ch + 1))
            img = photo.crop((left, top, left + cw, top + ch)).resize((SIDE, SIDE), Image.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            # hard-lit, high-contrast shots: far outside the value range of ordinary photos
            img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(1.5, 3.0)))
            img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
            crops.append(img)
        for split, part in (("train", crops[:PER_CLASS["train"]]),
                            ("val", crops[PER_CLASS["train"]:])):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i, img in enumerate(part):
                img.save(folder / f"{label}_{i:03d}.jpg", quality=92)
    marker.write_text("ok\n")
    return root


def train_checkpoint(data_root, run_dir, epochs: int = 12,
                     model: str = "shufflenet_v2_x0_5") -> Path:
    """Real MindSpore training (x0_5 by default) at 64 px on the dataset's train split."""
    from shufflenet.config import make_config
    from shufflenet.train import train

    cfg = make_config("demo", {
        "dataset": "imagenet", "data_dir": str(data_root), "image_resize": TRAIN_SIZE,
        "epoch_size": epochs, "decay_epochs": epochs - 1, "batch_size": 16, "lr": 0.02,
        "hflip": 0.5, "scale": [0.6, 1.0], "crop_pct": 0.875, "label_smoothing": 0.0,
        "ckpt_save_dir": str(run_dir), "val_while_train": False, "model": model})
    result = train(cfg)
    return Path(result.best_ckpt or result.last_ckpt)
