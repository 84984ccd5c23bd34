"""One builder per format: write the artifact (and its metadata) into a staging folder.

A builder returns :class:`Built` -- the files it wrote (the artifact first),
the metadata, and the batch size the artifact takes -- and never touches the
destination folder; :func:`exporters.export.run_export` checks and installs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .formats import FORMATS
from .metadata import embed_onnx_metadata, write_sidecar
# what a builder returns and the metadata every artifact carries: shared with edge.py
from .staged import Built, artifact_metadata, library_versions  # noqa: F401


def save_onnx(model, path: Path, meta: dict) -> Path:
    import onnx

    embed_onnx_metadata(model, meta)
    onnx.save_model(model, str(path))
    return path


def _copy(model):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def build_mindir(ctx, stage: Path) -> Built:
    from .mindspore_export import export_mindir

    path = export_mindir(ctx.source, stage, ctx.stem, ctx.batch)
    meta = artifact_metadata(ctx, "mindir", ctx.batch, input_name=None, output_name=None)
    return Built([path, write_sidecar(path, meta)], meta, ctx.batch)


def build_onnx_raw(ctx, stage: Path) -> Built:
    model = _copy(ctx.raw_onnx())
    batch = ctx._raw_batch()
    meta = artifact_metadata(ctx, "onnx-raw", batch, {"opset": 11},
                             input_name=model.graph.input[0].name,
                             output_name=model.graph.output[0].name)
    path = save_onnx(model, stage / f"{ctx.stem}{FORMATS['onnx-raw'].suffix}", meta)
    return Built([path], meta, batch)


def build_onnx(ctx, stage: Path) -> Built:
    from .onnx_optimize import OPSET

    meta = artifact_metadata(ctx, "onnx", ctx.batch, {"opset": OPSET})
    path = save_onnx(_copy(ctx.optimized_onnx()), stage / f"{ctx.stem}.onnx", meta)
    return Built([path], meta, ctx.batch)


def build_onnx_fp16(ctx, stage: Path) -> Built:
    from .onnx_optimize import OPSET
    from .precision import to_fp16

    meta = artifact_metadata(ctx, "onnx-fp16", ctx.batch, {"opset": OPSET, "io": "float32"})
    path = save_onnx(to_fp16(ctx.optimized_onnx()), stage / f"{ctx.stem}.fp16.onnx", meta)
    return Built([path], meta, ctx.batch)


def build_onnx_int8(ctx, stage: Path) -> Built:
    from .calibration import calibration_images
    from .onnx_optimize import OPSET
    from .precision import quantize_int8

    images, described = calibration_images(ctx.source, ctx.calib_dir, ctx.dataset,
                                           ctx.calib_samples)
    # the Gather form of the channel split: ONNX Runtime runs int8 convs in NHWC,
    # where a step-2 channel Slice is an element-wise gather (~1/4 of int8 time)
    model = quantize_int8(ctx.optimized_onnx("gather"), images, stage)
    meta = artifact_metadata(ctx, "onnx-int8", ctx.batch, {
        "opset": OPSET, "quant_format": "QDQ", "activations": "uint8", "weights": "int8",
        "per_channel": True, "calibration": described, "calibration_method": "minmax",
        "channel_split": "Gather"})
    path = save_onnx(model, stage / f"{ctx.stem}.int8.onnx", meta)
    # check on images of the calibration domain: ranges fitted to digits say
    # nothing about photos, and vice versa
    picks = np.linspace(0, len(images) - 1, num=min(4, len(images))).astype(int)
    return Built([path], meta, ctx.batch, smoke_input=images[picks])


def _edge(fmt: str):
    def build(ctx, stage: Path) -> Built:
        from . import edge

        return getattr(edge, f"build_{fmt}")(ctx, stage)
    return build


BUILDERS = {
    "mindir": build_mindir,
    "onnx-raw": build_onnx_raw,
    "onnx": build_onnx,
    "onnx-fp16": build_onnx_fp16,
    "onnx-int8": build_onnx_int8,
    "openvino": _edge("openvino"),
    "mnn": _edge("mnn"),
    "ncnn": _edge("ncnn"),
    "tflite": _edge("tflite"),
}
