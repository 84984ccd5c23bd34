"""Test helper for the runtime/bench/ssh tests: a tiny real checkpoint and its artifacts.

Artifacts come from :func:`exporters.export_checkpoint`; images are real
photos (:func:`shufflenet.data.preprocess.sample_photos`) through the
artifact's own :class:`EvalTransform`.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")

MODEL = "shufflenet_v2_x0_5"
SIZE = 64
NUM_CLASSES = 10
BATCH = 2
LABELS = [f"class{i}" for i in range(NUM_CLASSES)]


def make_checkpoint(out_dir: Path) -> Path:
    """A seeded x0_5 checkpoint with metadata.

    Uses the exporter tests' helper when it is there (it sets BatchNorm
    statistics from real photos, so logits differ clearly between images).
    """
    try:
        from conftest_export import make_checkpoint as calibrated
    except ImportError:
        calibrated = None
    if calibrated is not None:
        return Path(calibrated(Path(out_dir) / f"{MODEL}.ckpt"))
    import mindspore as ms

    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model, get_model_config

    ms.set_seed(0)
    np.random.seed(0)
    net = create_model(MODEL, num_classes=NUM_CLASSES)
    cfg = get_model_config(MODEL)
    meta = {"model": MODEL, "num_classes": NUM_CLASSES, "in_channels": 3, "image_size": SIZE,
            "labels": LABELS, "mean": list(cfg.mean), "std": list(cfg.std),
            "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation, "epoch": 0}
    path = Path(out_dir) / f"{MODEL}.ckpt"
    save_checkpoint(net, path, metadata=meta)
    return path


def real_batch(meta: dict, count: int = BATCH) -> np.ndarray:
    """``count`` real photos through the artifact's own EvalTransform (NCHW float32)."""
    from shufflenet.data.preprocess import EvalTransform, sample_photos

    t = EvalTransform.from_metadata(meta)
    photos = sample_photos()
    return np.stack([t(photos[i % len(photos)][1]) for i in range(count)]).astype(np.float32)


def export_artifacts(ckpt: Path, out_dir: Path, formats=("mindir", "onnx")) -> dict:
    """``{format: path}``: the checkpoint through :func:`exporters.export_checkpoint`."""
    from exporters import export_checkpoint

    results = export_checkpoint(ckpt, list(formats), out_dir, image_size=SIZE)
    return {r.format: Path(r.path) for r in results}


ALL_FORMATS = ("mindir", "onnx", "openvino", "mnn", "ncnn")


@functools.lru_cache(maxsize=None)
def built_artifacts() -> tuple[Path, dict]:
    """``(checkpoint, {format: artifact})``, built once per test session in a temp folder.

    Formats whose engine is not installed are left out.
    """
    import atexit
    import shutil
    import tempfile

    from runtimes import available_engines

    out = Path(tempfile.mkdtemp(prefix="shufflenet-runtime-tests-"))
    atexit.register(shutil.rmtree, out, True)
    engines = set(available_engines())
    need = {"openvino": "openvino", "mnn": "mnn", "ncnn": "ncnn"}
    formats = [f for f in ALL_FORMATS if f not in need or need[f] in engines]
    if "ncnn" in formats:
        import importlib.util

        if importlib.util.find_spec("pnnx") is None:
            formats.remove("ncnn")
    ckpt = make_checkpoint(out)
    return ckpt, export_artifacts(ckpt, out, tuple(formats))


@functools.lru_cache(maxsize=None)
def resolved_artifacts() -> tuple:
    """:func:`built_artifacts` resolved once: ``(checkpoint Artifact, {format: Artifact})``,
    what bench, parity and the devices take (they never re-read a path)."""
    from shufflenet.artifact import resolve_artifact

    ckpt, arts = built_artifacts()
    return resolve_artifact(ckpt), {fmt: resolve_artifact(p) for fmt, p in arts.items()}
