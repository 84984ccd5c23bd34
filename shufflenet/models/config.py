"""The frozen per-variant config: everything a consumer needs to use the weights."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..artifact import (
    DEFAULT_CROP_PCT,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
)


@dataclass(frozen=True)
class PretrainedConfig:
    """Preprocessing and provenance of a variant's weights.

    ``mean``/``std`` are on the 0-255 pixel scale, as in MindCV's transforms:
    ``x = (pixel - mean) / std`` on RGB, NCHW.
    """

    name: str
    url: str = ""
    sha256_prefix: str = ""
    input_size: tuple = (3, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = DEFAULT_INTERPOLATION
    num_classes: int = 1000
    first_conv: str = "first_conv.0"
    classifier: str = "classifier"
    top1: float | None = None
    top5: float | None = None
    layout: str = "NCHW"
    color: str = "RGB"
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d
