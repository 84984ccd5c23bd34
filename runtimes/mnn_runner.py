"""MNN runner: a ``.mnn`` model through ``MNN.nn`` with a CPU runtime manager."""
from __future__ import annotations

import numpy as np

from shufflenet.errors import RuntimeEngineError

from ._lazy import import_engine, stdout_redirected
from .base import InputSpec, Runner


class MNNRunner(Runner):
    """A ``.mnn`` model; ``precision`` option ``high`` (fp32, default), ``normal`` or ``low``."""

    engine = "mnn"
    extra = "mnn"
    option_values = {"precision": ("high", "normal", "low")}

    def _activate_impl(self) -> None:
        mnn = import_engine("MNN", self.engine, self.extra, quiet=True)
        names_in = [self.metadata.get("input_name") or "input"]
        names_out = [self.metadata.get("output_name") or "output"]
        config = {"precision": str(self.options.get("precision", "high")), "backend": 0,
                  "numThread": int(self.threads or 1)}
        try:
            with stdout_redirected():  # MNN prints from C++ on stdout
                rt = mnn.nn.create_runtime_manager((config,))
                self._module = mnn.nn.load_module_from_file(self.artifact, names_in, names_out,
                                                            runtime_manager=rt)
        except Exception as exc:
            raise RuntimeEngineError(f"mnn: cannot load {self.artifact}: "
                                     f"{str(exc).strip().splitlines()[0][:200]}") from None
        if self._module is None:
            raise RuntimeEngineError(f"mnn: cannot load {self.artifact} (inputs {names_in}, "
                                     f"outputs {names_out})")
        self._expr, self._rt = mnn.expr, rt

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        x = self._expr.const(batch, list(batch.shape), self._expr.NCHW)
        out = self._module.forward(x)
        if isinstance(out, (list, tuple)):
            out = out[0]
        if out.data_format != self._expr.NCHW:
            out = self._expr.convert(out, self._expr.NCHW)
        return np.array(out.read(), copy=True)

    def _input_spec_impl(self) -> InputSpec:
        return InputSpec(str(self.metadata.get("input_name") or "input"),
                         tuple(self.metadata.get("input_shape") or (-1, 3, 224, 224)))

    def _deactivate_impl(self) -> None:
        self._module = self._rt = None

    def _engine_version(self) -> str:
        from importlib.metadata import version

        try:
            return version("MNN")
        except Exception:
            return "unknown"
