"""Artifacts for the parity tests: a tiny, well-conditioned x0_5 checkpoint and its exports.

The exports come from the project's own exporters; the helpers below only
copy an export with one deliberate change (a weight, or its metadata).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")

MODEL = "shufflenet_v2_x0_5"
SIZE = 64
NUM_CLASSES = 10


def ckpt_metadata(model=MODEL, num_classes=NUM_CLASSES, size=SIZE) -> dict:
    return {"model": model, "num_classes": num_classes, "in_channels": 3, "image_size": size,
            "labels": [str(i) for i in range(num_classes)],
            "mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375],
            "crop_pct": 0.875, "interpolation": "bilinear", "epoch": 0, "global_step": 0}


def _sharpen(net, seed: int, size: int) -> None:
    """Turn a random net into a well-conditioned nearest-centroid digit classifier.

    A freshly initialised net (BN statistics 0/1) maps every image to nearly
    the same logits, and quantises chaotically. Here BN statistics are
    measured on real photos and digits (variance floored at the layer median
    so no near-constant channel is blown up), and the head holds the
    centred class-mean features of demo training digits: logits follow the
    image content with real margins, and accuracy on the demo set is far
    above chance -- so agreement and accuracy metrics mean something.
    """
    import mindspore as ms
    from mindspore import nn, ops

    from shufflenet.data.demo import demo_arrays
    from shufflenet.data.preprocess import EvalTransform, sample_photos

    tf = EvalTransform.from_metadata(ckpt_metadata(size=size))
    digits, labels = demo_arrays("train", size)
    calib = [tf(img) for _, img in sample_photos()] + [tf(d) for d in digits[:22]]
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            # momentum 1.0 in the primitive: moving statistics := this batch's
            cell.bn_train = ops.BatchNorm(is_training=True, epsilon=cell.eps, momentum=1.0)
    net.set_train(True)
    net(ms.Tensor(np.stack(calib)))
    net.set_train(False)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            var = cell.moving_variance.asnumpy()
            cell.moving_variance.set_data(ms.Tensor(np.maximum(var, np.median(var)).astype(np.float32)))
    rng = np.random.RandomState(seed)
    pick = rng.permutation(len(labels))[:200]
    x = ms.Tensor(np.stack([tf(d) for d in digits[pick]]))
    feats = net.forward_head(net.forward_features(x), pre_logits=True).asnumpy().astype(np.float64)
    feats -= feats.mean(0)
    num_classes = int(net.classifier.weight.shape[0])
    head = rng.normal(0, 1e-3, (num_classes, feats.shape[1]))
    for c in range(min(num_classes, 10)):
        centroid = feats[labels[pick] == c].mean(0)
        head[c] = centroid / (np.linalg.norm(centroid) + 1e-12)
    net.classifier.weight.set_data(ms.Tensor((head * 4.0).astype(np.float32)))


def make_checkpoint(path, model=MODEL, num_classes=NUM_CLASSES, size=SIZE, seed=0) -> Path:
    """A reproducible checkpoint with the full metadata contract."""
    import mindspore as ms

    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    ms.set_seed(seed)
    net = create_model(model, num_classes=num_classes)
    _sharpen(net, seed, size)
    return save_checkpoint(net, path, metadata=ckpt_metadata(model, num_classes, size))


def export_artifacts(ckpt, out_dir, formats="onnx,onnx-raw,mindir,onnx-fp16,onnx-int8",
                     int8_max_drop_pp: float = 1.0) -> dict:
    """The project's own exporters; int8 calibrated on demo training digits.

    ``int8_max_drop_pp``: the int8 search's budget. Past its first trial the search times
    candidates (``search_seconds``; is a mixed model faster than fp32?), so which layers
    it keeps in fp32 can change with the machine's load; a budget that int8-all meets
    (this checkpoint's MinMax int8 loses ~2.2 pp of expected flips) makes the file the same
    on every run.
    """
    from exporters import export_checkpoint

    results = export_checkpoint(ckpt, formats, out_dir, dataset="demo", calib_samples=32,
                                max_accuracy_drop_pp=int8_max_drop_pp)
    return {r.format: Path(r.path) for r in results}


def edit_initializer(src, dst, name: str, change) -> Path:
    """Copy an ONNX file with one initializer changed by ``change(array) -> array``."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(t).copy()), name))
            break
    else:
        raise KeyError(f"{name} is not an initializer of {src}")
    onnx.save(model, str(dst))
    return Path(dst)


def edit_metadata(src, dst, drop: bool = False, **changes) -> Path:
    """Copy an ONNX file with its shufflenet metadata changed (or dropped)."""
    import onnx

    from exporters.metadata import ONNX_KEY, embed_onnx_metadata, read_artifact_metadata

    meta = dict(read_artifact_metadata(src), **changes)
    model = onnx.load(str(src))
    if drop:
        keep = [p for p in model.metadata_props if p.key != ONNX_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
    else:
        embed_onnx_metadata(model, meta)
    onnx.save(model, str(dst))
    return Path(dst)
