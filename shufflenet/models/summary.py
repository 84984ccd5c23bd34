"""One row of facts per registered model (what ``shufflenet models`` prints)."""
from __future__ import annotations

from ..macs import count_macs, count_params
from .registry import create_model, get_model_config, list_models


def describe_model(name: str, num_classes: int = 1000, image_size: int | None = None) -> dict:
    cfg = get_model_config(name)
    size = image_size or cfg.input_size[-1]
    net = create_model(name, num_classes=num_classes)
    every, trainable = count_params(net)
    return {
        "name": name,
        "params": every,
        "trainable_params": trainable,
        "mmacs": round(count_macs(net, (size, size)) / 1e6, 1),
        "input_size": list(cfg.input_size[:1]) + [size, size],
        "top1": cfg.top1,
        "top5": cfg.top5,
        "url": cfg.url,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "crop_pct": cfg.crop_pct,
        "interpolation": cfg.interpolation,
    }


def describe_models(num_classes: int = 1000, image_size: int | None = None) -> list[dict]:
    return [describe_model(n, num_classes, image_size) for n in list_models()]
