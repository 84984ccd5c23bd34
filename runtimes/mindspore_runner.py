"""MindSpore runners: the ``.ckpt`` reference and MindIR (``nn.GraphCell``).

The checkpoint runner is the reference every other engine is compared with:
it rebuilds the network with :func:`shufflenet.models.create_model` from the
checkpoint's own metadata (model name, classes, preprocessing).
"""
from __future__ import annotations

import numpy as np

from shufflenet.errors import RuntimeEngineError

from ._lazy import import_engine
from .base import InputSpec, Runner

# Preprocessing keys that travel from checkpoint metadata into runner metadata.
_PREPROCESS = ("mean", "std", "crop_pct", "interpolation")


def _use_cpu(ms) -> None:
    try:
        ms.set_device("CPU")
    except RuntimeError:  # the runtime is already up (another runner or the caller set it)
        pass


def _set_threads(ms, threads: int | None) -> None:
    if threads:
        try:
            ms.device_context.cpu.op_tuning.threads_num(int(threads))
        except RuntimeError:  # MindSpore fixes the pool size once per process
            pass


class MindSporeRunner(Runner):
    """A ``.ckpt`` checkpoint run by MindSpore itself (the reference).

    Options: ``mode`` (``"pynative"`` default, or ``"graph"``), ``model`` and
    ``num_classes`` (used only when the checkpoint's metadata lacks them).
    """

    engine = "mindspore"
    extra = None
    option_values = {"mode": ("pynative", "graph"), "model": str, "num_classes": int}

    def _activate_impl(self) -> None:
        ms = import_engine("mindspore", self.engine, self.extra)
        from shufflenet.models import get_model_config, load_eval_network

        mode = self.options.get("mode", "pynative")  # checked against option_values already
        _use_cpu(ms)
        self._previous_mode = ms.get_context("mode")  # restored on deactivate: it is global
        ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
        _set_threads(ms, self.threads)
        # the one checkpoint -> eval network rule (class count never defaults to 1000)
        try:
            ev = load_eval_network(self.artifact, model=self.options.get("model"),
                                   num_classes=self.options.get("num_classes"))
        except BaseException:
            ms.set_context(mode=self._previous_mode)  # no deactivate follows a failed activate
            raise
        name, num_classes, in_channels, meta = ev.model, ev.num_classes, ev.in_channels, ev.metadata
        cfg = get_model_config(name)
        size = int(meta.get("image_size") or cfg.input_size[-1])
        # a checkpoint without an input size (MindCV's) takes the size its artifact's contract
        # names: the network is fully convolutional; one that records a size keeps it, and an
        # artifact contradicting it fails parity's contract check
        side = size if meta.get("image_size") else -1
        self._ms, self._net = ms, ev.net
        self.metadata = {
            "model": name, "num_classes": num_classes, "format": "checkpoint", "precision": "fp32",
            "layout": "NCHW", "image_size": size, "input_shape": [-1, in_channels, side, side],
            "labels": meta.get("labels") or [str(i) for i in range(num_classes)],
            "input_name": "input",
            **{k: meta.get(k, getattr(cfg, k, None)) for k in _PREPROCESS},
        }

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self._net(self._ms.Tensor(batch)).asnumpy()

    def _input_spec_impl(self) -> InputSpec:
        return InputSpec("input", tuple(self.metadata["input_shape"]))

    def _deactivate_impl(self) -> None:
        self._net = None
        if getattr(self, "_previous_mode", None) is not None:
            self._ms.set_context(mode=self._previous_mode)

    def _engine_version(self) -> str:
        import mindspore

        return mindspore.__version__


class MindIRRunner(Runner):
    """A ``.mindir`` file loaded with ``mindspore.load`` and run as ``nn.GraphCell``."""

    engine = "mindir"
    extra = None

    def _activate_impl(self) -> None:
        ms = import_engine("mindspore", self.engine, self.extra)
        _use_cpu(ms)
        _set_threads(ms, self.threads)
        try:
            graph = ms.load(self.artifact)
        except Exception as exc:  # MindSpore raises RuntimeError/ValueError on a bad file
            raise RuntimeEngineError(f"mindir: cannot load {self.artifact}: "
                                     f"{str(exc).strip().splitlines()[0][:200]}") from None
        self._ms, self._cell = ms, ms.nn.GraphCell(graph)

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        out = self._cell(self._ms.Tensor(batch))
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.asnumpy()

    def _input_spec_impl(self) -> InputSpec:
        return InputSpec(str(self.metadata.get("input_name") or "input"),
                         tuple(self.metadata.get("input_shape") or (-1, 3, 224, 224)))

    def _deactivate_impl(self) -> None:
        self._cell = None

    def _engine_version(self) -> str:
        import mindspore

        return mindspore.__version__
