"""The built-in demo dataset: scikit-learn's bundled handwritten digits.

1,797 real 8x8 grey-level scans of digits 0-9 (UCI "optdigits"), shipped
inside scikit-learn, so it works offline. Images are upscaled (bilinear) to
``size`` and replicated to RGB. The split is fixed: a seeded, stratified
80/20 train/val split (1,438 / 359 images).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError

DEMO_CLASSES = tuple(str(i) for i in range(10))
DEMO_SEED = 20260101
DEMO_VAL_FRACTION = 0.2


def _split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(DEMO_SEED)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = int(round(len(idx) * DEMO_VAL_FRACTION))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return {"train": np.sort(np.array(train)), "val": np.sort(np.array(val))}


def demo_arrays(split: str = "train", size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, size, size, 3] RGB, labels int32 [N])``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the demo dataset needs scikit-learn: pip install scikit-learn") from None
    from PIL import Image

    if split not in ("train", "val"):
        raise DataError(f"demo dataset has splits 'train' and 'val', not {split!r}")
    digits = load_digits()
    labels = digits.target.astype(np.int32)
    idx = _split_indices(labels)[split]
    # 0..16 grey levels -> 0..255, ink white on black as scanned
    grey = np.clip(digits.images[idx] * (255.0 / 16.0), 0, 255).astype(np.uint8)
    out = np.empty((len(idx), size, size, 3), dtype=np.uint8)
    for i, g in enumerate(grey):
        up = np.asarray(Image.fromarray(g, mode="L").resize((size, size), Image.BILINEAR))
        out[i] = up[..., None]
    return out, labels[idx]


def materialize_demo(root: str | os.PathLike, size: int = 32) -> Path:
    """Write the demo set as an ImageNet-style folder ``root/{train,val}/<class>/*.png``.

    Idempotent: an existing complete copy is reused.
    """
    from PIL import Image

    root = Path(root)
    marker = root / f".complete-{size}"
    if marker.exists():
        return root
    for split in ("train", "val"):
        images, labels = demo_arrays(split, size)
        for i, (img, lab) in enumerate(zip(images, labels)):
            d = root / split / DEMO_CLASSES[lab]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{split}_{i:05d}.png")
    marker.write_text("ok\n")
    return root
