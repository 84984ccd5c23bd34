"""Reload an artifact in its own engine and run it once (the export smoke check).

The engines are run by the :mod:`runtimes` runners themselves, imported
lazily: one engine layer everywhere, so the smoke check exercises exactly
the code (options, load checks, layouts) that bench and parity use later.
This is the one place an exporter reaches right, to the runtimes; it keeps
no engine code of its own.
"""
from __future__ import annotations

import numpy as np

from runtimes import create_runner
from runtimes._lazy import stdout_redirected
from shufflenet.artifact import Artifact, resolve_artifact

# the engine that smoke-checks each export format (the format's own engine)
SMOKE_ENGINES = {"mindir": "mindir", "onnx-raw": "onnxruntime", "onnx": "onnxruntime",
                 "onnx-fp16": "onnxruntime", "onnx-int8": "onnxruntime", "openvino": "openvino",
                 "mnn": "mnn", "ncnn": "ncnn", "tflite": "tflite"}


def quiet_stdout():
    """Silence C/C++ prints on fd 1 (MNN, converters) so stdout stays our table/JSON."""
    return stdout_redirected(to_devnull=True)


def run_artifact(fmt: str, path, x: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Run ``x`` (NCHW float32) through the artifact of format ``fmt``; logits out.

    ``meta`` is the artifact's metadata when the caller has it (an export
    still in its staging folder, sidecar not written yet); otherwise it is
    read from the artifact. One thread, the engine's fp32 defaults.
    """
    art = resolve_artifact(path) if meta is None else Artifact.from_metadata(
        path, {**meta, "format": fmt})
    with create_runner(SMOKE_ENGINES[fmt], art, threads=1) as runner:
        return runner.infer(np.ascontiguousarray(x, dtype=np.float32))
