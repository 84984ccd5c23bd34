"""The runner interface every inference engine implements.

A runner owns one artifact on one engine. The base class owns the lifecycle
(``activate`` / ``infer`` / ``deactivate``, context manager), input
validation and timing; an engine implements only the ``_impl`` hooks.

Callers always pass NCHW float32 images already preprocessed by
:class:`shufflenet.data.preprocess.EvalTransform` built from the artifact's
metadata; a runner whose engine wants NHWC transposes inside ``_infer_impl``.
A batch of any size goes in: for an artifact with a fixed batch, :meth:`Runner.infer`
runs it in chunks of that size, padding the last with copies of its last
image and dropping their outputs (the one place that pads).

>>> with OnnxRuntimeRunner(art, threads=1) as r:   # doctest: +SKIP
...     logits = r.infer(batch)          # (N, num_classes) float32, any N
...     r.last_inference_time            # seconds, all chunks
...     r.latency(batch, {"iterations": 50}).p50_ms
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shufflenet.artifact import Artifact
from shufflenet.errors import RuntimeEngineError

from .machine import set_affinity
from .measure import LatencyResult, measure


@dataclass(frozen=True)
class InputSpec:
    name: str
    shape: tuple          # NCHW as the caller passes it; -1 = any batch
    dtype: str = "float32"


@dataclass
class RunnerInfo:
    engine: str
    engine_version: str
    artifact: str
    precision: str
    threads: int | None
    options: dict = field(default_factory=dict)


class Runner:
    """Base runner. Subclasses set ``engine`` and implement the hooks."""

    engine = "base"
    extra = None  # pip extra that brings the engine, for the missing-engine message

    def __init__(self, artifact: Artifact, threads: int | None = None, **options) -> None:
        if not isinstance(artifact, Artifact):  # resolved once, at the edge, never here again
            raise TypeError(f"a runner takes a resolved Artifact, got {artifact!r}: "
                            "use runtimes.resolve_artifact(path) (or create_runner) first")
        self.resolved = artifact
        self.artifact = str(self.resolved.path)
        self.threads = threads
        self.options = options
        self.metadata: dict = dict(self.resolved.metadata)
        self.check_options(options)
        self.is_active = False
        self.last_inference_time: float | None = None
        self.load_s: float | None = None       # seconds the last activate() took
        self.affinity = None                   # CPUs to pin this process to while active
        self._previous_affinity = None

    # -- lifecycle -----------------------------------------------------
    def activate(self) -> "Runner":
        if not self.is_active:
            self._pin()
            t0 = time.perf_counter()
            try:
                self._activate_impl()
            except BaseException:
                self._unpin()
                raise
            self.load_s = time.perf_counter() - t0
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            try:
                self._deactivate_impl()
            finally:
                self.is_active = False
                self._unpin()

    def _pin(self) -> None:
        """Pin before the engine starts its threads (they inherit the calling thread's set)."""
        if self.affinity:
            try:
                self._previous_affinity = set_affinity(self.affinity)
            except OSError as exc:
                raise RuntimeEngineError(f"cannot pin to CPUs {list(self.affinity)}: "
                                         f"{exc.strerror}") from None

    def _unpin(self) -> None:
        if self._previous_affinity is not None:
            set_affinity(self._previous_affinity)
            self._previous_affinity = None

    close = deactivate

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- inference -----------------------------------------------------
    def input_spec(self) -> InputSpec:
        self._require_active()
        return self._input_spec_impl()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one NCHW float32 batch of any size; returns ``(N, num_classes)`` logits."""
        self._require_active()
        batch = self._check_input(batch)
        start = time.perf_counter()
        outs = [np.asarray(self._infer_impl(part), dtype=np.float32).reshape(len(part), -1)[:n]
                for part, n in self._chunks(batch)]
        self.last_inference_time = time.perf_counter() - start
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def infer_outputs(self, batch: np.ndarray, names) -> dict:
        """Named graph tensors (e.g. intermediate layers) for one NCHW batch of any size.

        Only engines that can expose any graph tensor implement it (ONNX
        Runtime, OpenVINO); the parity layer probe uses it on a copy of the
        model whose graph outputs include ``names``.
        """
        self._require_active()
        batch = self._check_input(batch)
        names = list(names)
        chunks = [[np.asarray(o, dtype=np.float32)[:n] for o in self._infer_outputs_impl(part, names)]
                  for part, n in self._chunks(batch)]
        return {name: np.concatenate([c[k] for c in chunks]) for k, name in enumerate(names)}

    def latency(self, batch: np.ndarray, policy: dict | None = None, progress=None):
        """:func:`runtimes.measure.measure` of this (active) runner on ``batch``, where
        the runner lives; returns a :class:`runtimes.measure.LatencyResult`."""
        self._require_active()
        return self._latency_impl(self._check_input(batch), policy, progress)

    def _chunks(self, batch: np.ndarray):
        """``(part, real rows)``: the batch as the artifact's fixed batch size takes it."""
        dim = self._input_spec_impl().shape[0]
        fixed = dim if isinstance(dim, int) and dim > 0 else None
        if fixed is None or fixed == len(batch):
            yield batch, len(batch)
            return
        for i in range(0, len(batch), fixed):
            part, n = batch[i:i + fixed], min(fixed, len(batch) - i)
            if n < fixed:
                part = np.concatenate([part, np.repeat(part[-1:], fixed - n, 0)])
            yield np.ascontiguousarray(part), n

    def settings(self) -> dict:
        """The engine's effective settings, read back from the engine itself where it can
        tell (so a test or a report can see that an option really reached it)."""
        self._require_active()
        return self._settings_impl()

    def info(self) -> RunnerInfo:
        return RunnerInfo(self.engine, self._engine_version(), self.artifact,
                          str(self.metadata.get("precision", "fp32")), self.threads, dict(self.options))

    # -- hooks ----------------------------------------------------------
    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _deactivate_impl(self) -> None:
        pass

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _settings_impl(self) -> dict:
        return {}

    def _latency_impl(self, batch: np.ndarray, policy, progress) -> LatencyResult:
        return measure(self, batch, policy, progress)

    def _infer_outputs_impl(self, batch: np.ndarray, names: list) -> list:
        raise RuntimeEngineError(f"{self.engine}: this engine cannot return intermediate tensors")

    def _input_spec_impl(self) -> InputSpec:
        size = int(self.metadata.get("image_size", 224))
        return InputSpec(str(self.metadata.get("input_name") or "input"), (-1, 3, size, size))

    def _engine_version(self) -> str:
        return "unknown"

    # -- options --------------------------------------------------------
    #: option name -> allowed values (a tuple), a type (bool/int/str/list) or None (anything)
    option_values: dict = {}

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Reject an option the engine does not know, or a value it does not take."""
        known = cls.option_values
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise RuntimeEngineError(f"engine {cls.engine!r} has no option(s) {', '.join(unknown)}; "
                                     f"it takes {', '.join(known) or 'none'}")
        for name, value in options.items():
            allowed = known[name]
            if isinstance(allowed, tuple) and value not in allowed:
                raise RuntimeEngineError(f"engine {cls.engine!r} option {name}: {value!r} is not one "
                                         f"of {', '.join(map(repr, allowed))}")
            if isinstance(allowed, type) and not (isinstance(value, allowed) and not (
                    allowed is int and isinstance(value, bool))):
                raise RuntimeEngineError(f"engine {cls.engine!r} option {name} must be "
                                         f"{allowed.__name__}, got {value!r}")

    # -- helpers --------------------------------------------------------
    def _require_active(self) -> None:
        if not self.is_active:
            raise RuntimeEngineError(f"{self.engine} runner for {self.artifact} is not active; "
                                     "use it as a context manager or call activate()")

    def _check_input(self, batch) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.dtype != np.float32:
            batch = batch.astype(np.float32)
        spec = self._input_spec_impl()
        want = spec.shape
        if batch.ndim != 4:
            raise RuntimeEngineError(f"{self.engine}: expected an NCHW batch (4 dims), got shape "
                                     f"{tuple(batch.shape)}")
        for i, (got, exp) in enumerate(zip(batch.shape, want)):
            if i and exp not in (-1, None) and got != exp:  # dim 0: infer() pads to a fixed batch
                raise RuntimeEngineError(
                    f"{self.engine}: input shape {tuple(batch.shape)} does not match the artifact's "
                    f"{tuple(want)} (dim {i}); preprocess with the artifact's metadata")
        return np.ascontiguousarray(batch)
