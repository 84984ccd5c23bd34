"""What an export starts from: a checkpoint, its model, and a reference output.

:func:`load_source` reads the checkpoint, resolves model name / class count /
image size / labels (checkpoint metadata first, then the caller's options,
then the model's defaults), builds the MindSpore network with the weights
loaded, and computes the reference logits every artifact is compared with.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shufflenet.checkpoint import sha256_file
from shufflenet.data.preprocess import EvalTransform, sample_photos
from shufflenet.errors import ConfigError

# Metadata keys copied from the checkpoint into every artifact.
PREPROCESS_KEYS = ("mean", "std", "crop_pct", "interpolation")


@dataclass
class ExportSource:
    """A loaded checkpoint ready to export."""

    checkpoint: Path
    sha256: str
    model_name: str
    num_classes: int
    in_channels: int
    image_size: int
    labels: list
    preprocess: dict          # mean, std, crop_pct, interpolation
    checkpoint_meta: dict
    net: object = field(repr=False)
    reference_input: np.ndarray = field(repr=False)   # (2, C, S, S) float32, real photos
    _reference_output: np.ndarray | None = field(default=None, repr=False)

    def reference_output(self) -> np.ndarray:
        """MindSpore logits of the checkpoint on :attr:`reference_input` (cached)."""
        if self._reference_output is None:
            self._reference_output = run_mindspore(self.net, self.reference_input)
        return self._reference_output


def run_mindspore(net, x: np.ndarray) -> np.ndarray:
    import mindspore as ms

    return net(ms.Tensor(np.ascontiguousarray(x, dtype=np.float32))).asnumpy()


def reference_images(transform, count: int = 2, in_channels: int = 3) -> np.ndarray:
    """``count`` real photos (shipped with scikit-learn/-image) through ``transform``."""
    photos = sample_photos()
    arrays = [transform(photos[i % len(photos)][1]) for i in range(count)]
    x = np.stack(arrays).astype(np.float32)
    if in_channels == 1:
        x = x.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(x)


def load_source(checkpoint, model: str | None = None, num_classes: int | None = None,
                image_size: int | None = None, labels: list | None = None) -> ExportSource:
    """Read ``checkpoint`` and build everything an export needs.

    Raises :class:`CheckpointError` for a missing/corrupt checkpoint or a
    ``model``/``num_classes`` that contradicts its metadata, and
    :class:`ConfigError` when the model name is known nowhere.
    """
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms

    from shufflenet.models import get_model_config, load_eval_network

    path = Path(checkpoint)
    # PyNative for the export; the caller's mode is restored by export_checkpoint
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ev = load_eval_network(path, model=model, num_classes=num_classes)
    name, n_cls, in_ch, meta, net = ev.model, ev.num_classes, ev.in_channels, ev.metadata, ev.net
    # the network runs at any size >= 32: an explicit size overrides the trained one
    size = int(image_size or meta.get("image_size") or get_model_config(name).input_size[-1])
    if size < 32:
        raise ConfigError(f"image_size must be >= 32, got {size}")
    lab = meta.get("labels") or labels or [str(i) for i in range(n_cls)]
    if len(lab) != n_cls:
        raise ConfigError(f"{len(lab)} labels given for a {n_cls}-class model")
    cfg = get_model_config(name)
    pre = {"mean": list(meta.get("mean") or cfg.mean), "std": list(meta.get("std") or cfg.std),
           "crop_pct": float(meta.get("crop_pct") or cfg.crop_pct),
           "interpolation": str(meta.get("interpolation") or cfg.interpolation)}

    transform = EvalTransform(size, pre["crop_pct"], tuple(pre["mean"]), tuple(pre["std"]),
                              pre["interpolation"])
    x = reference_images(transform, 2, in_ch)
    return ExportSource(path, sha256_file(path), name, n_cls, in_ch, size, list(lab), pre,
                        meta, net, x)
