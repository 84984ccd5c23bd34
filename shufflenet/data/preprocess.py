"""The one evaluation preprocessing: the artifact's contract turned into tensors.

Every artifact's metadata records the parameters of :class:`EvalTransform`;
validate, the parity reference, int8 calibration and bench build it from the
checkpoint's or the artifact's metadata (:meth:`EvalTransform.from_metadata`)
and run it here, on the host, with Pillow. A device receives the resulting
NCHW float32 tensors, never images, so there is one resize in the whole
toolchain and the accuracy validate reports is the accuracy that ships.

Images are read by :func:`read_image` (one decode, and the sha256 of the
bytes read) and an image set is named by :func:`image_set_fingerprint`, the
one fingerprint every command and report shows.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..artifact import (
    DEFAULT_CROP_PCT,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from ..errors import DataError

# Bumped when the tensors an image becomes change, so cached evaluations are measured again
# (2: validate reads image files through EvalTransform, not MindSpore's OpenCV resize).
PREPROCESSING_VERSION = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
_INTERP = {"bilinear": 2, "bicubic": 3, "nearest": 0, "lanczos": 1, "box": 4, "hamming": 5}


def normalize_crop(crop_u8: np.ndarray, mean, std) -> np.ndarray:
    """An HWC uint8 crop -> CHW float32 ``(pixel - mean) / std`` (mean/std on 0-255): the last
    step of :class:`EvalTransform`, and what a test vector's stored crop is replayed through."""
    arr = np.asarray(crop_u8).astype(np.float32)
    arr = (arr - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


@dataclass(frozen=True)
class EvalTransform:
    """Resize the short side to ``image_size / crop_pct``, centre-crop, normalise.

    Output: float32 CHW, RGB, ``(pixel - mean) / std`` with mean/std on 0-255.
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    crop_pct: float = DEFAULT_CROP_PCT
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    interpolation: str = DEFAULT_INTERPOLATION

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERP:
            raise DataError(f"unknown interpolation {self.interpolation!r}; one of "
                            f"{', '.join(_INTERP)}")

    @classmethod
    def from_metadata(cls, meta: dict) -> "EvalTransform":
        """The transform a checkpoint's, an artifact's or a model config's metadata names
        (``image_size`` or ``input_size``, ``crop_pct``, ``mean``, ``std``, ``interpolation``);
        a field it lacks takes the zoo's default (:mod:`shufflenet.artifact`)."""
        size = meta.get("image_size") or (meta.get("input_size") or [DEFAULT_IMAGE_SIZE])[-1]
        crop = meta.get("crop_pct")
        return cls(int(size), float(DEFAULT_CROP_PCT if crop is None else crop),
                   tuple(float(v) for v in (meta.get("mean") or IMAGENET_MEAN)),
                   tuple(float(v) for v in (meta.get("std") or IMAGENET_STD)),
                   str(meta.get("interpolation") or DEFAULT_INTERPOLATION))

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
        image = image.resize((nw, nh), _INTERP[self.interpolation])
        left = (nw - self.image_size) // 2
        top = (nh - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        return normalize_crop(np.asarray(image), self.mean, self.std)

    def batch(self, images, in_channels: int = 3) -> np.ndarray:
        """``images`` (PIL images or HWC uint8 arrays) as one float32 NCHW batch; a
        one-channel model gets the channel mean."""
        x = np.stack([self(im) for im in images]).astype(np.float32)
        if in_channels == 1:
            x = x.mean(axis=1, keepdims=True)
        return np.ascontiguousarray(x)


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


def read_image(path: str | os.PathLike):
    """``(RGB PIL image, sha256 of the file's bytes)``: the one way an image file is read
    (one read, one decode), or :class:`DataError` naming the file."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            image = im.convert("RGB")
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        why = getattr(exc, "strerror", None) or exc
        raise DataError(f"cannot read image {path}: {why}") from None
    return image, hashlib.sha256(data).hexdigest()


def load_image(path: str | os.PathLike):
    """Open an image as RGB, or raise :class:`DataError` naming the file."""
    return read_image(path)[0]


def pixel_digest(array) -> str:
    """sha256 of an in-memory image's pixels and shape (the digest of an image not read
    from a file)."""
    arr = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()


def image_set_fingerprint(digests: Iterable[str], labels: Iterable | None = None) -> str:
    """The fingerprint of a set of images (and their labels, when labelled): sha256 over the
    sorted per-image digests, so it names the images, not the order a command read them in.

    Every command and report shows this one number for an image set: validate, parity, the
    pipeline, calibration.

    >>> image_set_fingerprint(["b", "a"]) == image_set_fingerprint(["a", "b"])
    True
    """
    digests = list(digests)
    rows = ([f"{d}|{int(y)}" for d, y in zip(digests, labels)] if labels is not None
            else list(digests))
    h = hashlib.sha256()
    for row in sorted(rows):
        h.update(row.encode() + b"\n")
    return h.hexdigest()


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
