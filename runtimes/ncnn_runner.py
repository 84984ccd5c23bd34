"""ncnn runner: ``.ncnn.param`` + ``.ncnn.bin``; ncnn takes one CHW image per extraction."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shufflenet.artifact import weights_path
from shufflenet.errors import RuntimeEngineError

from ._lazy import import_engine
from .base import InputSpec, Runner


def ncnn_bin_path(param: str | Path) -> Path:
    """``m.ncnn.param`` -> ``m.ncnn.bin`` (the weights next to the graph)."""
    return weights_path(param) or Path(str(param) + ".bin")


class NcnnRunner(Runner):
    """An ncnn model. Options: ``powersave`` (0 all cores, 1 little, 2 big; ncnn's
    CPU affinity), ``light_mode`` (default True), ``fp16`` (default False: fp32
    storage and arithmetic, what an fp32 artifact promises; True lets ncnn use
    fp16 storage/arithmetic where the CPU has it, as it does by default on
    ARMv8.2 phones)."""

    engine = "ncnn"
    extra = "ncnn"
    option_values = {"powersave": (0, 1, 2), "light_mode": bool, "fp16": bool}

    def _activate_impl(self) -> None:
        ncnn = import_engine("ncnn", self.engine, self.extra)
        weights = ncnn_bin_path(self.artifact)
        if not weights.exists():
            raise RuntimeEngineError(f"ncnn: weights {weights} not found next to {self.artifact}")
        if "powersave" in self.options:
            ncnn.set_cpu_powersave(int(self.options["powersave"]))
        net = ncnn.Net()
        net.opt.use_vulkan_compute = False
        net.opt.lightmode = bool(self.options.get("light_mode", True))
        fp16 = bool(self.options.get("fp16", False))
        net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = fp16
        net.opt.use_bf16_storage = False
        if self.threads:
            net.opt.num_threads = int(self.threads)
        code = net.load_param(self.artifact)
        if code != 0:
            raise RuntimeEngineError(f"ncnn: cannot load graph {self.artifact} (load_param "
                                     f"returned {code})")
        code = net.load_model(str(weights))
        if code != 0:
            raise RuntimeEngineError(f"ncnn: cannot load weights {weights} (load_model returned "
                                     f"{code}: truncated, or not the weights of this graph)")
        self._ncnn, self._net = ncnn, net
        self._in, self._out = net.input_names()[0], net.output_names()[0]

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        outs = []
        for image in batch:
            with self._net.create_extractor() as ex:
                ex.input(self._in, self._ncnn.Mat(np.ascontiguousarray(image)))
                ret, out = ex.extract(self._out)
                if ret != 0:
                    raise RuntimeEngineError(f"ncnn: extraction failed (code {ret})")
                outs.append(np.array(out, copy=True).reshape(-1))
        return np.stack(outs)

    def _settings_impl(self) -> dict:
        opt = self._net.opt
        return {"light_mode": bool(opt.lightmode), "threads": int(opt.num_threads),
                "fp16_storage": bool(opt.use_fp16_storage),
                "fp16_arithmetic": bool(opt.use_fp16_arithmetic),
                "powersave": int(self._ncnn.get_cpu_powersave())}

    def _input_spec_impl(self) -> InputSpec:
        shape = list(self.metadata.get("input_shape") or (-1, 3, 224, 224))
        return InputSpec(self._in, tuple([-1] + shape[1:]))  # the batch is looped over

    def _deactivate_impl(self) -> None:
        if getattr(self, "_net", None) is not None:
            self._net.clear()
        self._net = None

    def _engine_version(self) -> str:
        import ncnn

        return str(getattr(ncnn, "__version__", "unknown"))
