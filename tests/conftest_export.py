"""Helpers for the exporter tests: a tiny real checkpoint (imported explicitly)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")

MODEL = "shufflenet_v2_x0_5"
NUM_CLASSES = 10
SIZE = 64
LABELS = [f"digit{i}" for i in range(NUM_CLASSES)]


def make_checkpoint(path: Path, with_metadata: bool = True, seed: int = 0) -> Path:
    """A seeded, randomly initialised x0_5 / 10 classes checkpoint trained at 64 px.

    Plain initialisation on purpose: recalibrating BatchNorm statistics on a
    handful of images puts an untrained 16-block net in a regime where fp16
    and int8 rounding noise is amplified far beyond what a trained net shows.
    """
    import mindspore as ms

    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    ms.set_seed(seed)
    np.random.seed(seed)
    net = create_model(MODEL, num_classes=NUM_CLASSES)
    meta = {"model": MODEL, "num_classes": NUM_CLASSES, "image_size": SIZE, "labels": LABELS,
            "in_channels": 3} if with_metadata else {}
    return save_checkpoint(net, path, metadata=meta)
