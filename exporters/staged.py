"""What a format builder hands back, and the metadata every artifact carries.

Shared by :mod:`exporters.builders` (core formats) and :mod:`exporters.edge`
(edge formats), so that neither imports the other.
"""
from __future__ import annotations

from dataclasses import dataclass

from shufflenet import __version__
from shufflenet.versions import package_versions

from .formats import FORMATS
from .metadata import SCHEMA_VERSION

__all__ = ["Built", "artifact_metadata", "library_versions"]

_BASE_LIBS = ("mindspore", "onnx", "onnxruntime", "numpy")
_ENGINE_LIBS = {"openvino": ("openvino",), "mnn": ("MNN",), "ncnn": ("ncnn", "pnnx"),
                "tflite": ("onnx2tf", "tensorflow", "ai-edge-litert")}


@dataclass
class Built:
    files: list          # [artifact, companions...]; Paths inside the staging folder
    meta: dict
    batch: object        # "dynamic" or int: what the smoke check feeds
    # smoke-check input when the default photos do not fit (int8: its calibration domain)
    smoke_input: object = None
    # facts of this run that must stay out of the file (timings): a re-export is byte-identical
    details: dict | None = None


def library_versions(fmt: str) -> dict:
    return package_versions(_BASE_LIBS + _ENGINE_LIBS.get(fmt, ()))


def artifact_metadata(ctx, fmt: str, batch, options: dict | None = None, *,
                      input_name="input", output_name="logits") -> dict:
    """The metadata dict of ``exporters/metadata.py`` for one artifact."""
    src, spec = ctx.source, FORMATS[fmt]
    s = src.image_size
    shape = [-1 if batch == "dynamic" else int(batch), src.in_channels, s, s]
    if spec.layout == "NHWC":
        shape = [shape[0], s, s, src.in_channels]
    opts = {"batch": ctx.batch, "image_size": s}
    opts.update(options or {})
    return {
        "schema": SCHEMA_VERSION, "model": src.model_name, "num_classes": src.num_classes,
        "labels": list(src.labels), "format": fmt, "precision": spec.precision,
        "input_name": input_name, "output_name": output_name, "input_shape": shape,
        "layout": spec.layout, "image_size": s, "in_channels": src.in_channels,
        "channel_order": "RGB",
        **src.preprocess,
        "source_checkpoint": src.checkpoint.name, "source_sha256": src.sha256,
        "toolchain_version": __version__, "library_versions": library_versions(fmt),
        "export_options": opts,
    }
