"""Inference runtimes: one :class:`~runtimes.base.Runner` per engine, one registry.

>>> from runtimes import create_runner, engines_for_artifact
>>> engines_for_artifact("m.onnx")                      # doctest: +SKIP
['onnxruntime', 'openvino']
>>> with create_runner("onnxruntime", "m.onnx", threads=1) as r:   # doctest: +SKIP
...     logits = r.infer(batch)
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from shufflenet.errors import RuntimeEngineError

from ._lazy import engine_installed, install_hint
from .base import InputSpec, Runner, RunnerInfo

__all__ = ["ENGINES", "EngineSpec", "InputSpec", "Runner", "RunnerInfo", "artifact_files",
           "artifact_format", "available_engines", "create_runner", "engines_for_artifact",
           "get_engine"]


@dataclass(frozen=True)
class EngineSpec:
    """One engine: its runner class, the module it needs, and the artifact formats it runs."""

    name: str
    runner: str            # "module:Class", imported on first use
    module: str            # Python module the engine needs
    extra: str | None      # pip extra that brings it (None = core)
    formats: tuple         # artifact formats (exporter format names) it runs
    description: str
    options: tuple = ()    # engine options its runner accepts


ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("mindspore", "runtimes.mindspore_runner:MindSporeRunner", "mindspore", None,
               ("checkpoint",), "MindSpore on a .ckpt (the reference)",
               ("mode", "model", "num_classes")),
    EngineSpec("mindir", "runtimes.mindspore_runner:MindIRRunner", "mindspore", None,
               ("mindir",), "MindSpore MindIR via nn.GraphCell"),
    EngineSpec("onnxruntime", "runtimes.onnxruntime_runner:OnnxRuntimeRunner", "onnxruntime", None,
               ("onnx", "onnx-raw", "onnx-fp16", "onnx-int8"), "ONNX Runtime (CPU provider)",
               ("providers", "inter_op_threads", "graph_optimization")),
    EngineSpec("openvino", "runtimes.openvino_runner:OpenVINORunner", "openvino", "openvino",
               ("openvino", "onnx", "onnx-raw"), "OpenVINO (IR or ONNX), f32 by default",
               ("device", "inference_precision", "performance_hint")),
    EngineSpec("mnn", "runtimes.mnn_runner:MNNRunner", "MNN", "mnn", ("mnn",), "Alibaba MNN",
               ("precision",)),
    EngineSpec("ncnn", "runtimes.ncnn_runner:NcnnRunner", "ncnn", "ncnn", ("ncnn",), "Tencent ncnn",
               ("powersave", "light_mode")),
    EngineSpec("tflite", "runtimes.tflite_runner:LiteRTRunner", "ai_edge_litert", "tflite",
               ("tflite",), "LiteRT / TensorFlow Lite (NHWC)"),
)}


def get_engine(name: str) -> EngineSpec:
    """The :class:`EngineSpec` called ``name``, or a clear error listing the known ones."""
    try:
        return ENGINES[str(name).lower()]
    except KeyError:
        raise RuntimeEngineError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}") from None


def available_engines() -> list[str]:
    """Engines whose Python module is installed here (checked without importing it)."""
    return [e.name for e in ENGINES.values() if engine_installed(e.module)]


def artifact_format(path: str | os.PathLike) -> tuple[str, str, dict]:
    """``(format, precision, metadata)`` of an artifact; a ``.ckpt`` is ``checkpoint``/fp32."""
    path = Path(path)
    if path.suffix == ".ckpt":
        from shufflenet.checkpoint import read_metadata

        return "checkpoint", "fp32", read_metadata(path)
    from exporters.metadata import read_artifact_metadata

    meta = read_artifact_metadata(path)
    return str(meta.get("format", "unknown")), str(meta.get("precision", "fp32")), meta


def engines_for_artifact(path: str | os.PathLike, installed_only: bool = True) -> list[str]:
    """Engines that can run the artifact at ``path`` (installed ones only by default)."""
    fmt = artifact_format(path)[0]
    names = available_engines() if installed_only else list(ENGINES)
    return [n for n in names if fmt in ENGINES[n].formats]


def artifact_files(path: str | os.PathLike) -> list[Path]:
    """Every file the artifact needs on another machine: itself, weights, metadata sidecar."""
    from exporters.metadata import sidecar_path

    path = Path(path)
    files = [path]
    if path.suffix == ".xml":
        files.append(path.with_suffix(".bin"))
    elif path.suffix == ".param":
        from .ncnn_runner import ncnn_bin_path

        files.append(ncnn_bin_path(path))
    side = sidecar_path(path)
    if side.exists():
        files.append(side)
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise RuntimeEngineError(f"artifact file(s) missing: {', '.join(missing)}")
    return files


def create_runner(engine: str, artifact: str | os.PathLike, threads: int | None = None,
                  **options) -> Runner:
    """A (not yet active) runner for ``artifact`` on ``engine``.

    Raises :class:`RuntimeEngineError` for an unknown or missing engine (naming
    the pip extra) and for an artifact the engine cannot run.
    """
    spec = get_engine(engine)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise RuntimeEngineError(f"engine {spec.name!r} has no option(s) {', '.join(unknown)}; it "
                                 f"takes {', '.join(spec.options) or 'none'}")
    if not Path(artifact).exists():
        raise RuntimeEngineError(f"artifact not found: {artifact}")
    if not engine_installed(spec.module):
        raise RuntimeEngineError(f"engine {spec.name!r} is not installed (no Python module "
                                 f"{spec.module!r}): {install_hint(spec.extra)}")
    fmt = artifact_format(artifact)[0]
    if fmt not in spec.formats:
        raise RuntimeEngineError(
            f"engine {spec.name!r} cannot run a {fmt!r} artifact ({artifact}); it runs "
            f"{', '.join(spec.formats)}. Engines for this artifact: "
            f"{', '.join(engines_for_artifact(artifact, installed_only=False)) or 'none'}")
    module, cls = spec.runner.split(":")
    return getattr(importlib.import_module(module), cls)(artifact, threads=threads, **options)
