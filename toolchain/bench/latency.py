"""Measure one runner: load, first inference, warm-up until stable, measured runs.

The loop itself is :mod:`runtimes.agent`'s, so local and remote (ssh) numbers
come from the same code.
"""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from runtimes import agent


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
    measured_on: dict = field(default_factory=dict)    # see :func:`measured_on`
    artifact_info: dict = field(default_factory=dict)  # model, image_size, format, precision
    times_ms: list = field(default_factory=list, repr=False)
    output: np.ndarray | None = field(default=None, repr=False)   # logits of the first run

    def to_dict(self, with_times: bool = False) -> dict:
        d = asdict(self)
        d.pop("output")
        if not with_times:
            d.pop("times_ms")
        return d

    @classmethod
    def from_agent(cls, res: dict, artifact: str, precision: str, where: str,
                   target: str | None = None) -> "LatencyResult":
        """Build from the JSON a (remote) :mod:`runtimes.agent` printed."""
        return cls(engine=res["engine"], engine_version=str(res["engine_version"]),
                   artifact=artifact, precision=precision, threads=res.get("threads"),
                   batch=int(res["batch"]), load_s=float(res["load_s"]),
                   first_inference_ms=float(res["first_inference_ms"]), warmup=res["warmup"],
                   **res["stats"], peak_rss_mb=float(res["peak_rss_mb"]),
                   fingerprint=res["fingerprint"], where=where, target=target,
                   times_ms=list(res.get("times_ms", [])),
                   output=np.asarray(res["output"], dtype=np.float32) if "output" in res else None)


def measured_on(fingerprint: dict, where: str = "local") -> dict:
    """Where a measurement was taken, as budgets are judged on it.

    ``host_arch`` is this (toolchain) machine's, ``device_arch``, ``cpu`` and
    ``cpu_models`` (every distinct core model: a phone's little and big cores)
    the measuring device's (from the agent's fingerprint); ``emulated`` is
    true for an ``emu:`` target or when the device says it is emulated.
    """
    from runtimes.targets import normalize_arch, parse_where

    try:
        kind = parse_where(where)["kind"]
    except ValueError:
        kind = "unknown"
    return {"where": where, "kind": kind, "host_arch": normalize_arch(platform.machine()),
            "device_arch": normalize_arch(fingerprint.get("machine")),
            "cpu": fingerprint.get("cpu") or "unknown",
            "cpu_models": list(fingerprint.get("cpu_models")
                               or [fingerprint.get("cpu") or "unknown"]),
            "emulated": bool(kind == "emu" or fingerprint.get("emulated")),
            "emulator": fingerprint.get("emulated") if isinstance(fingerprint.get("emulated"), str)
            else None}


def measured_on_label(on: dict, where: str) -> str:
    """``local x86_64 AMD EPYC 7B13`` / ``emu:arm64 aarch64 Cortex-A76 (emulated)``: where a
    number was measured, with the CPU model its budgets are judged against."""
    if not on:
        return where
    cpu = on.get("cpu")
    cpu = "" if not cpu or cpu == "unknown" else f" {cpu}"
    return (f"{where} {on.get('device_arch') or '?'}{cpu}"
            + (" (emulated)" if on.get("emulated") else ""))


def measure_latency(runner, batch: np.ndarray, policy: dict | None = None,
                    progress=None) -> LatencyResult:
    """Measure ``runner`` on ``batch``; pass it inactive so the load time is measured too.

    ``policy`` takes the keys of :data:`runtimes.agent.DEFAULT_POLICY`;
    ``progress`` is an optional callable ``(phase, runs_done)`` for a progress bar.
    Peak RSS is the highest resident size sampled during the measured runs
    (and after loading), of this whole process.
    """
    policy = {**agent.DEFAULT_POLICY, **(policy or {})}
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    peak = agent._rss_mb()
    t0 = time.perf_counter()
    runner.activate()
    load_s = time.perf_counter() - t0
    peak = max(peak, agent._rss_mb())
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

    warm = agent.warm_up(lambda: runner.infer(batch), policy, ticker("warm-up"))
    times, run_peak = agent.timed_runs(lambda: runner.infer(batch), policy, ticker("measure"))
    stats = agent.summarize(times, batch.shape[0])
    info = runner.info()
    fingerprint = agent.machine_fingerprint()
    art = runner.resolved
    return LatencyResult(engine=info.engine, engine_version=info.engine_version,
                         artifact=info.artifact, precision=info.precision, threads=info.threads,
                         batch=int(batch.shape[0]), load_s=load_s, first_inference_ms=first_ms,
                         warmup=warm, **stats, peak_rss_mb=max(peak, run_peak),
                         fingerprint=fingerprint, measured_on=measured_on(fingerprint, "local"),
                         artifact_info={"name": art.name, "model": art.model,
                                        "image_size": art.image_size, "format": art.format,
                                        "precision": art.precision},
                         times_ms=[t * 1e3 for t in times], output=first)
