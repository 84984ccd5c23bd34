"""Where a latency was measured, as budgets judge it.

The measurement itself and its :class:`LatencyResult` live beside the runners
(:mod:`runtimes.measure`), so local, emulated and ssh numbers come from one code.
"""
from __future__ import annotations

import platform

from runtimes.measure import LatencyResult
from runtimes.targets import normalize_arch, parse_where

__all__ = ["LatencyResult", "measured_on", "measured_on_label"]


def measured_on(fingerprint: dict, where: str = "local") -> dict:
    """Where a measurement was taken, as budgets are judged on it.

    ``host_arch`` is this (toolchain) machine's, ``device_arch``, ``cpu`` and
    ``cpu_models`` (every distinct core model: a phone's little and big cores)
    the measuring device's (from the agent's fingerprint); ``emulated`` is
    true for an ``emu:`` target or when the device says it is emulated.
    """
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
