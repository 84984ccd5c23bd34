"""Checkpoint -> deployable artifacts (MindIR, ONNX fp32/fp16/int8, edge formats).

>>> from exporters import export_checkpoint
>>> results = export_checkpoint("best.ckpt", "onnx,onnx-int8", "out/")  # doctest: +SKIP
"""
from .export import ExportResult, export_checkpoint
from .formats import FORMATS, FormatSpec, formats_markdown, parse_formats

__all__ = ["ExportResult", "export_checkpoint", "FORMATS", "FormatSpec", "formats_markdown",
           "parse_formats"]
