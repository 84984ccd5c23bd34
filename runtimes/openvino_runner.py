"""OpenVINO runner: IR (``.xml`` + ``.bin``) or ONNX, compiled for the CPU."""
from __future__ import annotations

import numpy as np

from shufflenet.errors import RuntimeEngineError

from ._lazy import import_engine
from .base import InputSpec, Runner


class OpenVINORunner(Runner):
    """An OpenVINO IR or ONNX file compiled with ``openvino.Core``.

    Options: ``device`` (default ``CPU``), ``inference_precision`` (default
    ``f32``: on CPUs with bf16 support OpenVINO would otherwise silently run
    bf16, ~1e-2 relative error), ``performance_hint`` (default ``LATENCY``).
    """

    engine = "openvino"
    extra = "openvino"
    option_values = {"device": str, "inference_precision": ("f32", "bf16", "f16"),
                     "performance_hint": ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")}

    def _activate_impl(self) -> None:
        ov = import_engine("openvino", self.engine, self.extra)
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": str(self.options.get("inference_precision", "f32")),
                  "PERFORMANCE_HINT": str(self.options.get("performance_hint", "LATENCY"))}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        try:
            model = core.read_model(self.artifact)
            self._compiled = core.compile_model(model, str(self.options.get("device", "CPU")), config)
        except Exception as exc:
            raise RuntimeEngineError(f"openvino: cannot load {self.artifact}: "
                                     f"{str(exc).strip().splitlines()[0][:200]}") from None
        self._request = self._compiled.create_infer_request()
        port = self._compiled.input(0)
        self._input_name = port.get_any_name()
        pshape = port.get_partial_shape()
        self._shape = tuple(d.get_length() if d.is_static else -1 for d in pshape)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: batch})
        return np.asarray(result[self._compiled.output(0)])

    def _infer_outputs_impl(self, batch: np.ndarray, names: list) -> list:
        ports = {n: port for port in self._compiled.outputs for n in port.get_names()}
        missing = [n for n in names if n not in ports]
        if missing:
            raise RuntimeEngineError(f"openvino: the compiled model has no output(s) "
                                     f"{', '.join(missing[:3])} (fused away)")
        result = self._request.infer({0: batch})
        return [np.asarray(result[ports[n]]) for n in names]

    def _settings_impl(self) -> dict:
        def prop(name):
            try:
                return str(self._compiled.get_property(name)).split(".")[-1]
            except Exception:  # a property this plugin does not report
                return None
        return {"device": prop("EXECUTION_DEVICES"), "performance_hint": prop("PERFORMANCE_HINT"),
                "inference_precision": prop("INFERENCE_PRECISION_HINT"),
                "threads": prop("INFERENCE_NUM_THREADS")}

    def _input_spec_impl(self) -> InputSpec:
        return InputSpec(self._input_name, self._shape)

    def _deactivate_impl(self) -> None:
        self._request = self._compiled = None

    def _engine_version(self) -> str:
        import openvino

        return openvino.__version__.split("-")[0]
