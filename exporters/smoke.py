"""Reload an artifact in its own engine and run it once (the export smoke check).

The engines are run by the :mod:`runtimes` runners themselves, imported
lazily: one engine layer everywhere, so the smoke check exercises exactly
the code (options, load checks, layouts) that bench and parity use later.
This is the one place an exporter reaches right, to the runtimes; it keeps
no engine code of its own.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from runtimes import create_runner
from shufflenet.artifact import Artifact, resolve_artifact, weights_path

# the engine that smoke-checks each export format (the format's own engine)
SMOKE_ENGINES = {"mindir": "mindir", "onnx-raw": "onnxruntime", "onnx": "onnxruntime",
                 "onnx-fp16": "onnxruntime", "onnx-int8": "onnxruntime", "openvino": "openvino",
                 "mnn": "mnn", "ncnn": "ncnn", "tflite": "tflite"}


@contextlib.contextmanager
def quiet_stdout():
    """Silence C/C++ prints on fd 1 (MNN, converters) so stdout stays our table/JSON."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_artifact(fmt: str, path, x: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Run ``x`` (NCHW float32) through the artifact of format ``fmt``; logits out.

    ``meta`` is the artifact's metadata when the caller has it (an export
    still in its staging folder, sidecar not written yet); otherwise it is
    read from the artifact. One thread, the engine's fp32 defaults.
    """
    from pathlib import Path

    if meta is None:
        art = resolve_artifact(path)
    else:
        path = Path(path)
        files = [path] + [w for w in [weights_path(path)] if w is not None and w.exists()]
        art = Artifact(path, fmt, str(meta.get("precision", "fp32")), dict(meta), tuple(files))
    with create_runner(SMOKE_ENGINES[fmt], art, threads=1) as runner:
        return runner.infer(np.ascontiguousarray(x, dtype=np.float32))
