"""MindCV's ImageNet training augmentation, driven by an explicit RNG.

Each sample's randomness comes from a generator seeded by
``(seed, epoch, sample index)``, so an epoch's augmented batches are a pure
function of those numbers: a resumed run sees exactly the images an
uninterrupted run would have seen, whatever the worker count.

Evaluation uses :class:`shufflenet.data.preprocess.EvalTransform`, the one
eval preprocessing shared with export and parity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..artifact import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from .preprocess import _INTERP


@dataclass(frozen=True)
class TrainTransform:
    """RandomResizedCrop -> flips -> colour jitter -> normalise -> random erasing.

    Matches MindCV's ``create_transforms_imagenet_train`` order and defaults;
    output is float32 CHW.
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    scale: tuple = (0.08, 1.0)
    ratio: tuple = (0.75, 1.333)
    hflip: float = 0.5
    vflip: float = 0.0
    color_jitter: float = 0.4
    interpolation: str = DEFAULT_INTERPOLATION
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    re_prob: float = 0.0
    re_scale: tuple = (0.02, 0.33)
    re_ratio: tuple = (0.3, 3.3)
    re_value: float = 0.0
    re_max_attempts: int = 10

    @classmethod
    def from_config(cls, cfg) -> "TrainTransform":
        return cls(int(cfg["image_resize"]), tuple(cfg["scale"]), tuple(cfg["ratio"]),
                   float(cfg["hflip"]), float(cfg["vflip"]), float(cfg["color_jitter"] or 0),
                   cfg["interpolation"], tuple(cfg["mean"]), tuple(cfg["std"]),
                   float(cfg["re_prob"]), tuple(cfg["re_scale"]), tuple(cfg["re_ratio"]),
                   float(cfg["re_value"] or 0), int(cfg["re_max_attempts"]))

    def crop_box(self, width: int, height: int, rng: np.random.Generator) -> tuple:
        """(left, top, w, h) of a random crop; torchvision/MindCV's algorithm."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(*log_ratio))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return left, top, w, h
        # fallback: the largest centred crop within the ratio range
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def _jitter(self, image, rng):
        from PIL import ImageEnhance

        s = self.color_jitter
        ops = [ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color]
        factors = rng.uniform(max(0.0, 1 - s), 1 + s, size=3)
        for k in rng.permutation(3):
            image = ops[k](image).enhance(float(factors[k]))
        return image

    def _erase(self, arr: np.ndarray, rng) -> np.ndarray:
        return random_erase(arr, rng, self.re_scale, self.re_ratio, self.re_value,
                            self.re_max_attempts)

    def __call__(self, image, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image

        if not isinstance(image, Image.Image):
            image = Image.fromarray(np.asarray(image))
        image = image.convert("RGB")
        left, top, w, h = self.crop_box(image.width, image.height, rng)
        image = image.resize((self.image_size, self.image_size), _INTERP.get(self.interpolation, 2),
                             box=(left, top, left + w, top + h))
        if self.hflip > 0 and rng.random() < self.hflip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        if self.vflip > 0 and rng.random() < self.vflip:
            image = image.transpose(Image.FLIP_TOP_BOTTOM)
        if self.color_jitter > 0:
            image = self._jitter(image, rng)
        arr = np.asarray(image, dtype=np.float32)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        arr = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if self.re_prob > 0 and rng.random() < self.re_prob:
            arr = self._erase(arr, rng)
        return arr


def random_erase(arr: np.ndarray, rng: np.random.Generator, scale=(0.02, 0.33),
                 ratio=(0.3, 3.3), value: float = 0.0, max_attempts: int = 10) -> np.ndarray:
    """Fill one random rectangle of a CHW array with ``value``, in place (MindCV's rule).

    Area fraction from ``scale``, log-uniform aspect from ``ratio``; up to
    ``max_attempts`` tries to fit the rectangle inside, else the array is unchanged.
    """
    _, height, width = arr.shape
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(max_attempts):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if w < width and h < height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            arr[:, top:top + h, left:left + w] = value
            return arr
    return arr
