"""LiteRT (TensorFlow Lite) runner: a ``.tflite`` flatbuffer; the artifact takes NHWC."""
from __future__ import annotations

import numpy as np

from shufflenet.errors import RuntimeEngineError

from ._lazy import import_engine
from .base import InputSpec, Runner


class LiteRTRunner(Runner):
    """A ``.tflite`` model in LiteRT's ``Interpreter`` (``ai_edge_litert``).

    Callers pass NCHW like everywhere else; the runner transposes to NHWC
    when the artifact's metadata says ``layout: NHWC`` (the default for tflite).
    """

    engine = "tflite"
    extra = "tflite"
    option_values: dict = {}

    def _activate_impl(self) -> None:
        interp_mod = import_engine("ai_edge_litert.interpreter", self.engine, self.extra)
        try:
            self._interp = interp_mod.Interpreter(model_path=self.artifact,
                                                  num_threads=int(self.threads or 1))
        except Exception as exc:
            raise RuntimeEngineError(f"tflite: cannot load {self.artifact}: "
                                     f"{str(exc).strip().splitlines()[0][:200]}") from None
        self._nhwc = str(self.metadata.get("layout", "NHWC")).upper() == "NHWC"
        self._input = self._interp.get_input_details()[0]
        self._output = self._interp.get_output_details()[0]
        self._batch = None

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if self._nhwc else batch
        if self._batch != x.shape[0]:
            self._interp.resize_tensor_input(self._input["index"], list(x.shape))
            self._interp.allocate_tensors()
            self._batch = x.shape[0]
        self._interp.set_tensor(self._input["index"], x)
        self._interp.invoke()
        return self._interp.get_tensor(self._output["index"]).copy()

    def _input_spec_impl(self) -> InputSpec:
        size = int(self.metadata.get("image_size", 224))
        return InputSpec(str(self._input["name"]), (-1, 3, size, size))

    def _deactivate_impl(self) -> None:
        self._interp = None

    def _engine_version(self) -> str:
        from importlib.metadata import version

        try:
            return version("ai-edge-litert")
        except Exception:
            return "unknown"
