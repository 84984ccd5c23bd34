"""ONNX Runtime runner: execution providers, intra/inter-op threads, graph optimisation."""
from __future__ import annotations

import numpy as np

from shufflenet.errors import RuntimeEngineError

from ._lazy import import_engine
from .base import InputSpec, Runner

OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
              "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeRunner(Runner):
    """An ``.onnx`` file in an ``onnxruntime.InferenceSession``.

    Options: ``providers`` (default ``["CPUExecutionProvider"]``),
    ``inter_op_threads`` (default 1), ``graph_optimization`` (``all`` default,
    ``extended``, ``basic``, ``disable``). CPU affinity is set per process
    by the bench (``sched_setaffinity`` before the session creates its threads).
    """

    engine = "onnxruntime"
    extra = None  # a core dependency
    option_values = {"providers": list, "inter_op_threads": int, "graph_optimization": tuple(OPT_LEVELS)}

    def _activate_impl(self) -> None:
        ort = import_engine("onnxruntime", self.engine, self.extra)
        so = ort.SessionOptions()
        level = str(self.options.get("graph_optimization", "all")).lower()
        if level not in OPT_LEVELS:
            raise RuntimeEngineError(f"onnxruntime: graph_optimization must be one of "
                                     f"{', '.join(OPT_LEVELS)}, got {level!r}")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[level])
        if self.threads:
            so.intra_op_num_threads = int(self.threads)
        so.inter_op_num_threads = int(self.options.get("inter_op_threads", 1))
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3
        providers = list(self.options.get("providers") or ["CPUExecutionProvider"])
        unknown = [p for p in providers if p not in ort.get_available_providers()]
        if unknown:
            raise RuntimeEngineError(f"onnxruntime: provider(s) {', '.join(unknown)} not available "
                                     f"here (have {', '.join(ort.get_available_providers())})")
        try:
            self._sess = ort.InferenceSession(self.artifact, so, providers=providers)
        except Exception as exc:
            raise RuntimeEngineError(f"onnxruntime: cannot load {self.artifact}: "
                                     f"{str(exc).strip().splitlines()[0][:200]}") from None
        inp = self._sess.get_inputs()[0]
        self._input_name = inp.name
        self._shape = tuple(d if isinstance(d, int) else -1 for d in inp.shape)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input_name: batch})[0]

    def _infer_outputs_impl(self, batch: np.ndarray, names: list) -> list:
        return self._sess.run(names, {self._input_name: batch})

    def _settings_impl(self) -> dict:
        so = self._sess.get_session_options()
        return {"providers": self._sess.get_providers(),
                "graph_optimization_level": str(so.graph_optimization_level).split(".")[-1],
                "intra_op_threads": so.intra_op_num_threads,
                "inter_op_threads": so.inter_op_num_threads}

    def _input_spec_impl(self) -> InputSpec:
        return InputSpec(self._input_name, self._shape)

    def _deactivate_impl(self) -> None:
        self._sess = None

    def _engine_version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__
