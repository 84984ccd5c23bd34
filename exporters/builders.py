"""One builder per format: write the artifact (and its metadata) into a staging folder.

A builder returns :class:`Built` -- the files it wrote (the artifact first),
the metadata, and the batch size the artifact takes -- and never touches the
destination folder; :func:`exporters.export.run_export` checks and installs.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import edge
from .calibration import calibration_data
from .formats import FORMATS
from .int8_search import interleaved_latency_ms, search_int8
from .metadata import save_onnx, write_sidecar
from .mindspore_export import export_mindir
from .onnx_optimize import OPSET
from .precision import to_fp16
from .qat_export import build_qat_int8

# what a builder returns and the metadata every artifact carries: shared with edge.py
from .staged import Built, artifact_metadata, library_versions  # noqa: F401


def _copy(model):
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def build_mindir(ctx, stage: Path) -> Built:
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
    meta = artifact_metadata(ctx, "onnx", ctx.batch, {"opset": OPSET})
    path = save_onnx(_copy(ctx.optimized_onnx()), stage / f"{ctx.stem}.onnx", meta)
    return Built([path], meta, ctx.batch)


def build_onnx_fp16(ctx, stage: Path) -> Built:
    meta = artifact_metadata(ctx, "onnx-fp16", ctx.batch, {"opset": OPSET, "io": "float32"})
    path = save_onnx(to_fp16(ctx.optimized_onnx()), stage / f"{ctx.stem}.fp16.onnx", meta)
    return Built([path], meta, ctx.batch)


def build_onnx_int8(ctx, stage: Path) -> Built:
    if "qat" in ctx.source.checkpoint_meta:  # learned ranges, not re-calibrated
        return build_qat_int8(ctx, stage)
    data = calibration_data(ctx.source, ctx.calib_dir, ctx.dataset, ctx.calib_samples,
                            train_data=ctx.train_data)
    # the Gather form of the channel split: ONNX Runtime runs int8 convs in NHWC,
    # where a step-2 channel Slice is an element-wise gather (~1/4 of int8 time)
    fp32 = ctx.optimized_onnx("gather")
    found = search_int8(fp32, data.images, data.heldout, data.heldout_labels, stage,
                        max_drop=ctx.max_accuracy_drop, search_seconds=ctx.search_seconds,
                        progress=ctx.progress)
    models = {"fp32": fp32, "int8_all": found.all_int8}
    if found.fp32_layers:
        models["mixed"] = found.model
    latency = interleaved_latency_ms(models, data.images, seconds=ctx.latency_seconds)
    int8 = found.summary()
    details = dict(int8, **found.timings(), latency_ms=latency,
                   latency_note="ONNX Runtime CPU, 1 thread, batch 1, interleaved at export time")
    described = dict(data.description)
    meta = artifact_metadata(ctx, "onnx-int8", ctx.batch, {
        "opset": OPSET, "quant_format": "QDQ", "activations": "uint8", "weights": "int8",
        "per_channel": found.per_channel, "calibration": described,
        "calibration_method": found.method, "fp32_layers": list(found.fp32_layers),
        "channel_split": "Gather", "int8": int8})
    if data.stand_in:
        meta["accuracy_note"] = described["note"]
    path = save_onnx(found.model, stage / f"{ctx.stem}.int8.onnx", meta)
    # check on images of the calibration domain: ranges fitted to digits say
    # nothing about photos, and vice versa
    images = data.images
    picks = np.linspace(0, len(images) - 1, num=min(4, len(images))).astype(int)
    return Built([path], meta, ctx.batch, smoke_input=images[picks], details={"int8": details})


def _edge(fmt: str):
    def build(ctx, stage: Path) -> Built:
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
