"""The one evaluation preprocessing function, shared by validation, export and parity.

Every artifact's metadata records the parameters below; runtimes and the
parity check rebuild a :class:`EvalTransform` from that metadata, so a
runtime never guesses how images were prepared.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_INTERP = {"bilinear": 2, "bicubic": 3, "nearest": 0, "lanczos": 1, "box": 4, "hamming": 5}


@dataclass(frozen=True)
class EvalTransform:
    """Resize the short side to ``image_size / crop_pct``, centre-crop, normalise.

    Output: float32 CHW, RGB, ``(pixel - mean) / std`` with mean/std on 0-255.
    """

    image_size: int = 224
    crop_pct: float = 0.875
    mean: tuple = (123.675, 116.28, 103.53)
    std: tuple = (58.395, 57.12, 57.375)
    interpolation: str = "bilinear"

    @classmethod
    def from_metadata(cls, meta: dict) -> "EvalTransform":
        size = meta.get("image_size") or (meta.get("input_size") or [3, 224, 224])[-1]
        return cls(int(size), float(meta.get("crop_pct", 0.875)),
                   tuple(float(v) for v in meta.get("mean", cls.mean)),
                   tuple(float(v) for v in meta.get("std", cls.std)),
                   str(meta.get("interpolation", "bilinear")))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @property
    def resize_size(self) -> int:
        return int(round(self.image_size / self.crop_pct)) if self.crop_pct > 0 else self.image_size

    def __call__(self, image) -> np.ndarray:
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        image = image.convert("RGB")
        w, h = image.size
        short = self.resize_size
        if w <= h:
            nw, nh = short, max(1, int(round(h * short / w)))
        else:
            nw, nh = max(1, int(round(w * short / h))), short
        image = image.resize((nw, nh), _INTERP.get(self.interpolation, 2))
        left = (nw - self.image_size) // 2
        top = (nh - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        arr = np.asarray(image, dtype=np.float32)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))


def list_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted; clear errors for missing/empty folders."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"not a folder: {folder}")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern)
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...) found in {folder}")
    return files


def load_image(path: str | os.PathLike):
    """Open an image as RGB, or raise :class:`DataError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def sample_photos() -> list[tuple[str, "object"]]:
    """Real photos that ship inside installed packages: ``[(name, PIL image)]``.

    scikit-learn's two sample photos always; scikit-image's colour photos
    when it is installed.
    """
    from PIL import Image

    photos = []
    try:
        from sklearn.datasets import load_sample_images

        ds = load_sample_images()
        for fname, img in zip(ds.filenames, ds.images):
            photos.append((f"sklearn/{Path(fname).name}", Image.fromarray(img)))
    except Exception:  # pragma: no cover - sklearn is a core dependency
        pass
    try:
        import skimage.data as skd

        for name in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "hubble_deep_field",
                     "immunohistochemistry", "retina", "cat"):
            fn = getattr(skd, name, None)
            if fn is None:
                continue
            try:
                arr = fn()
            except Exception:
                continue
            if getattr(arr, "ndim", 0) == 3 and arr.shape[-1] in (3, 4):
                photos.append((f"skimage/{name}", Image.fromarray(arr[..., :3])))
    except ImportError:
        pass
    if not photos:
        raise DataError("no sample photos available: install scikit-learn or scikit-image, "
                        "or pass --images DIR")
    return photos


def fingerprint_arrays(arrays: Iterable[np.ndarray]) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
