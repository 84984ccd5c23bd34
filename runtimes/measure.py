"""The one latency measurement: first inference, warm-up until stable, measured runs.

It runs beside the runner it measures: in this process for an in-process
runner, inside the device's agent for any other (the agent's ``latency``
operation calls :func:`measure` on its own runner), so every number comes
from this code. Standard library and numpy only: it ships in the agent zipapp.

>>> with device.open("onnxruntime", art, threads=1) as runner:      # doctest: +SKIP
...     result = runner.latency(batch, {"iterations": 50})
...     result.p50_ms, result.load_s, result.fingerprint["cpu"]
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .machine import machine_fingerprint

__all__ = ["DEFAULT_POLICY", "LatencyResult", "measure", "process_peak_rss_mb", "summarize",
           "timed_runs", "warm_up"]

DEFAULT_POLICY = {
    "warmup_min": 5,            # at least this many warm-up runs
    "warmup_max": 200,          # give up waiting for stability after this many
    "warmup_max_s": 20.0,       # ... or after this many seconds
    "warmup_window": 8,         # compare the medians of the last two windows
    "warmup_tolerance": 0.05,   # stable when they differ by less than 5 %
    "iterations": 100,          # measured runs (ignored when time_budget_s is set)
    "time_budget_s": None,      # measure for this long instead
    "min_iterations": 10,       # with a time budget, never fewer measured runs than this
}


@dataclass
class LatencyResult:
    """What one measurement found. Times in ms unless named ``_s``."""

    engine: str
    engine_version: str
    artifact: str
    precision: str
    threads: int | None
    batch: int
    load_s: float
    first_inference_ms: float
    warmup: dict
    iterations: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    throughput_ips: float
    peak_rss_mb: float
    fingerprint: dict
    where: str = "local"
    target: str | None = None
    measured_on: dict = field(default_factory=dict)    # toolchain.bench.latency.measured_on
    artifact_info: dict = field(default_factory=dict)  # model, image_size, format, precision
    vectors: dict = field(default_factory=dict)   # the bundled test vectors' check before timing
    times_ms: list = field(default_factory=list, repr=False)
    output: np.ndarray | None = field(default=None, repr=False)   # logits of the first run

    def to_dict(self, with_times: bool = False) -> dict:
        d = asdict(self)
        d.pop("output")
        if not with_times:
            d.pop("times_ms")
        return d

    def to_wire(self) -> dict:
        """JSON-able, everything included (the agent's ``latency`` reply)."""
        d = self.to_dict(with_times=True)
        d["output"] = None if self.output is None else np.asarray(self.output).tolist()
        return d

    @classmethod
    def from_wire(cls, d: dict) -> "LatencyResult":
        out = d.get("output")
        return cls(**{**d, "output": None if out is None else np.asarray(out, dtype=np.float32)})


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return float("nan")


def process_peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MiB.

    Linux: ``VmHWM`` (reset by exec, unlike ``ru_maxrss``, which a child
    inherits from a big parent); elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0
    except (ImportError, OSError):
        return float("nan")


def warm_up(run, policy: dict, tick=None) -> dict:
    """Call ``run()`` until the rolling median latency is stable (or a cap is hit).

    Stable: the median of the last ``warmup_window`` runs differs from the
    median of the window before by less than ``warmup_tolerance``.
    """
    p = {**DEFAULT_POLICY, **(policy or {})}
    window, times, start = int(p["warmup_window"]), [], time.perf_counter()
    stable = False
    while True:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        if tick:
            tick()
        n = len(times)
        if n >= max(int(p["warmup_min"]), 2 * window):
            prev, last = np.median(times[-2 * window:-window]), np.median(times[-window:])
            if prev > 0 and abs(last - prev) / prev < float(p["warmup_tolerance"]):
                stable = True
                break
        if n >= int(p["warmup_max"]) or time.perf_counter() - start > float(p["warmup_max_s"]):
            break
    return {"iterations": len(times), "stable": stable, "seconds": time.perf_counter() - start,
            "last_median_ms": float(np.median(times[-window:]) * 1e3)}


def timed_runs(run, policy: dict, tick=None) -> tuple[list, float]:
    """Measured runs: ``iterations`` of them, or as many as fit in ``time_budget_s``.

    Returns ``(seconds per run, peak sampled RSS in MiB)``.
    """
    p = {**DEFAULT_POLICY, **(policy or {})}
    budget = p.get("time_budget_s")
    times, peak, start = [], _rss_mb(), time.perf_counter()
    while True:
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        peak = max(peak, _rss_mb())
        if tick:
            tick()
        n = len(times)
        if budget:  # a time budget still measures at least min_iterations runs
            if n >= int(p["min_iterations"]) and time.perf_counter() - start >= float(budget):
                break
        elif n >= int(p["iterations"]):
            break
    return times, peak


def summarize(times, batch: int) -> dict:
    """Latency statistics in milliseconds, throughput in images per second."""
    ms = np.asarray(times, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    return {"iterations": int(ms.size), "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": mean, "std_ms": float(ms.std()), "min_ms": float(ms.min()),
            "max_ms": float(ms.max()), "throughput_ips": batch * 1e3 / mean if mean > 0 else 0.0}


def measure(runner, batch: np.ndarray, policy: dict | None = None, progress=None,
            whole_process: bool = False) -> LatencyResult:
    """Measure an active in-process ``runner`` on ``batch``.

    ``policy`` takes the keys of :data:`DEFAULT_POLICY`; ``progress`` is an
    optional ``(phase, runs_done)`` callable. ``load_s`` is the runner's own
    activation time; peak RSS is the highest resident size of this process
    seen before the first inference and during the measured runs; ``whole_process``
    (the agent, a process of its own) also counts the loading, from ``VmHWM``.
    """

    policy = {**DEFAULT_POLICY, **(policy or {})}
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    peak = _rss_mb()
    t0 = time.perf_counter()
    first = runner.infer(batch)
    first_ms = (time.perf_counter() - t0) * 1e3

    def ticker(phase):
        if progress is None:
            return None
        count = [0]

        def tick():
            count[0] += 1
            progress(phase, count[0])
        return tick

    warm = warm_up(lambda: runner.infer(batch), policy, ticker("warm-up"))
    times, run_peak = timed_runs(lambda: runner.infer(batch), policy, ticker("measure"))
    info = runner.info()
    art = runner.resolved
    return LatencyResult(engine=info.engine, engine_version=info.engine_version,
                         artifact=info.artifact, precision=info.precision, threads=info.threads,
                         batch=int(batch.shape[0]), load_s=float(runner.load_s or 0.0),
                         first_inference_ms=first_ms, warmup=warm,
                         **summarize(times, batch.shape[0]),
                         peak_rss_mb=max(peak, run_peak, process_peak_rss_mb() if whole_process else peak),
                         fingerprint=machine_fingerprint(),
                         artifact_info={"name": art.name, "model": art.model,
                                        "image_size": art.image_size, "format": art.format,
                                        "precision": art.precision},
                         times_ms=[t * 1e3 for t in times], output=first)
