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

from shufflenet.artifact import Artifact, resolve_artifact
from shufflenet.errors import RuntimeEngineError

from ._lazy import engine_installed, not_installed
from .base import InputSpec, Runner, RunnerInfo

__all__ = ["ENGINES", "Artifact", "EngineSpec", "InputSpec", "Runner", "RunnerInfo",
           "available_engines", "create_runner",
           "engines_for_artifact", "get_engine", "resolve_artifact"]


@dataclass(frozen=True)
class EngineSpec:
    """One engine: its runner class, the module it needs, and the artifact formats it runs."""

    name: str
    runner: str            # "module:Class", imported on first use
    module: str            # Python module the engine needs
    extra: str | None      # pip extra that brings it (None = core)
    formats: tuple         # artifact formats (exporter format names) it runs
    description: str

    def runner_class(self) -> type:
        """The runner class (its module imports only numpy; the engine loads on activate)."""
        module, cls = self.runner.split(":")
        return getattr(importlib.import_module(module), cls)

    @property
    def options(self) -> tuple:
        """Engine options its runner accepts (the runner's ``option_values`` is the one list)."""
        return tuple(self.runner_class().option_values)


ENGINES: dict[str, EngineSpec] = {e.name: e for e in (
    EngineSpec("mindspore", "runtimes.mindspore_runner:MindSporeRunner", "mindspore", None,
               ("checkpoint",), "MindSpore on a .ckpt (the reference)"),
    EngineSpec("mindir", "runtimes.mindspore_runner:MindIRRunner", "mindspore", None,
               ("mindir",), "MindSpore MindIR via nn.GraphCell"),
    EngineSpec("onnxruntime", "runtimes.onnxruntime_runner:OnnxRuntimeRunner", "onnxruntime", None,
               ("onnx", "onnx-raw", "onnx-fp16", "onnx-int8"), "ONNX Runtime (CPU provider)"),
    EngineSpec("openvino", "runtimes.openvino_runner:OpenVINORunner", "openvino", "openvino",
               ("openvino", "onnx", "onnx-raw"), "OpenVINO (IR or ONNX), f32 by default"),
    EngineSpec("mnn", "runtimes.mnn_runner:MNNRunner", "MNN", "mnn", ("mnn",), "Alibaba MNN"),
    EngineSpec("ncnn", "runtimes.ncnn_runner:NcnnRunner", "ncnn", "ncnn", ("ncnn",), "Tencent ncnn"),
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


def engines_for_artifact(path: "str | os.PathLike | Artifact", installed_only: bool = True) -> list[str]:
    """Engines that can run the artifact at ``path`` (installed ones only by default)."""
    fmt = resolve_artifact(path).format
    names = available_engines() if installed_only else list(ENGINES)
    return [n for n in names if fmt in ENGINES[n].formats]


def create_runner(engine: str, artifact: "str | os.PathLike | Artifact", threads: int | None = None,
                  **options) -> Runner:
    """A (not yet active) runner for ``artifact`` (a path or a resolved :class:`Artifact`).

    Raises :class:`RuntimeEngineError` for an unknown or missing engine (naming
    the pip extra), an option the engine does not know or a value it does not
    take, and an artifact the engine cannot run.
    """
    spec = get_engine(engine)
    spec.runner_class().check_options(options)   # before anything is read or loaded
    if not isinstance(artifact, Artifact) and not Path(artifact).exists():
        raise RuntimeEngineError(f"artifact not found: {artifact}")
    if not engine_installed(spec.module):
        raise RuntimeEngineError(not_installed(spec.name, spec.module, spec.extra))
    art = resolve_artifact(artifact)
    if art.format not in spec.formats:
        raise RuntimeEngineError(
            f"engine {spec.name!r} cannot run a {art.format!r} artifact ({art.path}); it runs "
            f"{', '.join(spec.formats)}. Engines for this artifact: "
            f"{', '.join(engines_for_artifact(art, installed_only=False)) or 'none'}")
    return spec.runner_class()(art, threads=threads, **options)
