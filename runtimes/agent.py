"""The device-side entry point: the runtimes runners, driven by JSON requests.

This module runs wherever an artifact runs: here in a fresh process, on an
ssh host, or on the emulated ARM64 device. It is shipped there inside a
zipapp (:mod:`runtimes.bundle`) together with the runners and the artifact
metadata contract, and imports only the standard library, numpy and the
engine: the engines load through :func:`runtimes.create_runner`, exactly as
on the host, so target options reach the engine (or are rejected) everywhere.

Two ways to call it:

``python agent.pyz JOB.json``
    one bench job: ``engine``, ``artifact``, ``input`` (a ``.npy`` NCHW
    float32 batch), ``threads``, ``affinity``, ``options``, ``policy`` (see
    :data:`DEFAULT_POLICY`). Prints one line ``SHUFFLENET-AGENT-RESULT {json}``
    and exits 0, or ``SHUFFLENET-AGENT-ERROR message`` and exits 2.
    Engines may print other lines; progress goes to stderr.

``python agent.pyz --serve``
    a session on stdin/stdout, one JSON request per line and one
    ``SHUFFLENET-AGENT-REPLY {json}`` line per request: ``{"op": "info"}``
    (the device), ``{"op": "load", "engine", "artifact", "threads",
    "options", "metadata"}``, ``{"op": "infer", "x": ARRAY}`` (preprocessed NCHW batch in,
    logits out), ``{"op": "quit"}``. An ``ARRAY`` is ``{"shape", "dtype",
    "b64"}`` (raw little-endian bytes): logits come back bit for bit.

The measurement loop (:func:`warm_up`, :func:`timed_runs`, :func:`summarize`)
is also what :mod:`toolchain.bench.latency` uses in-process, so every number
comes from the same code.
"""
from __future__ import annotations

import base64
import json
import os
import platform
import sys
import time

import numpy as np

RESULT_MARK = "SHUFFLENET-AGENT-RESULT "
ERROR_MARK = "SHUFFLENET-AGENT-ERROR "
REPLY_MARK = "SHUFFLENET-AGENT-REPLY "
PROGRESS_MARK = "SHUFFLENET-AGENT-PROGRESS "   # on stderr: "<phase> <runs done>"
AGENT_VERSION = 2

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


# -- measurement (shared with toolchain.bench.latency) ---------------------------
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


# -- where this runs ---------------------------------------------------------------
# Arm's MIDR part numbers (implementer 0x41) of the cores a deployment meets.
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
             "0xd49": "Neoverse-N2", "0xd40": "Neoverse-V1", "0xd4f": "Neoverse-V2",
             "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd80": "Cortex-A520",
             "0xd81": "Cortex-A720", "0xd82": "Cortex-X4", "0xd0e": "Cortex-A76AE",
             "0xd42": "Cortex-A78AE", "0xd4b": "Cortex-A78C"}
# Qualcomm's own part numbers (implementer 0x51) for Kryo cores built on Arm's designs
# (Snapdragon 845/855/865 generation); later Snapdragons report Arm's implementer and part.
QCOM_PARTS = {"0x802": "Kryo 3xx Gold (Cortex-A75)", "0x803": "Kryo 3xx Silver (Cortex-A55)",
              "0x804": "Kryo 4xx Gold (Cortex-A76)", "0x805": "Kryo 4xx Silver (Cortex-A55)"}
# cpuinfo flags that change inference numerics or kernels, by a readable name
NUMERIC_FEATURES = {"fphp": "fp16", "asimdhp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm",
                    "bf16": "bf16", "sve": "sve", "sve2": "sve2", "avx2": "avx2",
                    "avx512f": "avx512", "avx512_vnni": "vnni", "avx_vnni": "vnni",
                    "avx512_bf16": "bf16", "amx_tile": "amx", "f16c": "f16c"}


def _core_model(block: dict) -> str | None:
    """One core's model: Arm's core name from its part number, else ``model name``."""
    part, implementer = block.get("cpu part"), block.get("cpu implementer")
    if part and implementer == "0x41":
        return ARM_PARTS.get(part, f"Arm part {part}")
    if part and implementer == "0x51" and part in QCOM_PARTS:
        return QCOM_PARTS[part]
    return block.get("model name")


def parse_cpuinfo(text: str) -> tuple[str, list, list]:
    """``(CPU model, numerics-relevant features, every distinct core model)`` from /proc/cpuinfo.

    The model and features are the first core's. A big.LITTLE phone lists its
    little cores first (``Cortex-A55``), so the core list is what says it also
    has ``Cortex-A76`` big cores.
    """
    blocks, block = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if block:
                blocks.append(block)
            block = {}
            continue
        key, _, value = line.partition(":")
        block.setdefault(key.strip().lower(), value.strip())
    first = blocks[0] if blocks else {}
    flags = (first.get("features") or first.get("flags") or "").split()
    features = sorted({NUMERIC_FEATURES[f] for f in flags if f in NUMERIC_FEATURES})
    models = list(dict.fromkeys(m for m in map(_core_model, blocks) if m))
    hardware = next((b["hardware"] for b in blocks if b.get("hardware")), None)
    model = _core_model(first) or hardware or platform.processor() or platform.machine()
    return model, features, models or [model]


def _cpuinfo() -> tuple[str, list, list]:
    """:func:`parse_cpuinfo` of this machine's /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            return parse_cpuinfo(fh.read())
    except OSError:
        return parse_cpuinfo("")


# userland arch -> kernel archs that run it natively (a 32-bit userland on a 64-bit kernel)
_NATIVE_ON = {"armv7l": ("aarch64", "arm64"), "armv8l": ("aarch64", "arm64"),
              "i386": ("x86_64",), "i686": ("x86_64",), "arm64": ("aarch64",),
              "amd64": ("x86_64",)}


def user_mode_emulator(kernel_arch: str | None, machine: str) -> str | None:
    """``qemu-user``-style emulation seen from inside: the kernel is of another arch.

    Under qemu-user (the emulated device, or Docker's ``--platform linux/arm64`` through
    binfmt) ``uname`` reports the guest arch but ``/proc/sys/kernel/arch`` is the host
    kernel's. Returns e.g. ``"user-mode: aarch64 on a x86_64 kernel"``, or None.

    >>> user_mode_emulator("x86_64", "aarch64")
    'user-mode: aarch64 on a x86_64 kernel'
    >>> user_mode_emulator("aarch64", "armv7l") is None   # native 32-bit userland
    True
    """
    if not kernel_arch or not machine:
        return None
    kernel, mine = kernel_arch.strip().lower(), machine.strip().lower()
    if kernel == mine or kernel in _NATIVE_ON.get(mine, ()):
        return None
    return f"user-mode: {machine} on a {kernel_arch.strip()} kernel"


def _kernel_arch() -> str | None:
    try:  # Linux 6.1+; absent elsewhere, and then there is nothing to compare
        with open("/proc/sys/kernel/arch") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def machine_fingerprint() -> dict:
    """Where the numbers were taken: arch, CPU model and features, emulated or not, cores, OS.

    ``emulated`` is the emulator and CPU model the host started this process
    under (``qemu:cortex-a76``), else what the process sees itself (a userland of
    another arch than the kernel's: qemu-user through binfmt, e.g. a Docker
    ``--platform`` container), or None on real hardware.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    model, features, models = _cpuinfo()
    return {"cpu": model, "cpu_models": models, "cpu_features": features, "arch": platform.machine(),
            "emulated": os.environ.get("SHUFFLENET_EMULATED")
            or user_mode_emulator(_kernel_arch(), platform.machine()),
            "logical_cores": os.cpu_count(), "usable_cores": usable,
            "machine": platform.machine(), "system": platform.platform(),
            "python": platform.python_version(), "hostname": platform.node()}


def set_affinity(cpus) -> list | None:
    """Pin this process to ``cpus`` (Linux); returns the previous set, or None."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    previous = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, [int(c) for c in cpus])
    return previous


# -- arrays on the wire ---------------------------------------------------------------
def encode_array(a) -> dict:
    a = np.ascontiguousarray(a)
    return {"shape": list(a.shape), "dtype": a.dtype.newbyteorder("<").str,
            "b64": base64.b64encode(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
            .decode("ascii")}


def decode_array(d: dict) -> np.ndarray:
    raw = base64.b64decode(d["b64"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).astype(
        np.dtype(d["dtype"]).newbyteorder("="))


# -- requests --------------------------------------------------------------------------
def open_runner(engine: str, artifact: str, threads=None, options=None, metadata=None):
    """An active runner through the same registry the host uses.

    ``metadata``: the artifact's metadata as the host resolved it, so a device
    without the ``onnx`` package never has to parse an ONNX file for it.
    """
    from runtimes import create_runner

    if metadata:
        from pathlib import Path

        from shufflenet.artifact import Artifact, sidecar_path, weights_path

        path = Path(artifact)
        extra = [p for p in (weights_path(path), sidecar_path(path)) if p and p.exists()]
        artifact = Artifact(path, str(metadata.get("format", "unknown")),
                            str(metadata.get("precision", "fp32")), dict(metadata),
                            (path, *extra))
    return create_runner(engine, artifact, threads=threads, **dict(options or {})).activate()


def engines_here() -> dict:
    """``{engine: version or None}`` for every engine whose module is importable here."""
    from runtimes import ENGINES
    from runtimes._lazy import engine_installed

    out = {}
    for name, spec in ENGINES.items():
        out[name] = _dist_version(spec.module) if engine_installed(spec.module) else None
    return out


# engine module -> its PyPI distribution (importlib.metadata reads the version
# without importing the engine, which costs seconds under emulation)
_DISTRIBUTIONS = {"ai_edge_litert": "ai-edge-litert"}


def _dist_version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_DISTRIBUTIONS.get(module, module))
    except PackageNotFoundError:
        return "unknown"


def _progress(phase: str, every: int = 5):
    count = [0]

    def tick():
        count[0] += 1
        if count[0] % every == 0:
            sys.stderr.write(f"{PROGRESS_MARK}{phase} {count[0]}\n")
            sys.stderr.flush()
    return tick


def run_job(job: dict) -> dict:
    """Load, first inference, warm-up, measured runs; everything as a dict."""
    x = np.ascontiguousarray(np.load(job["input"]).astype(np.float32))
    set_affinity(job.get("affinity"))
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    runner = open_runner(job["engine"], job["artifact"], job.get("threads"), job.get("options"),
                         job.get("metadata"))
    load_s = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        first = runner.infer(x)
        first_s = time.perf_counter() - t0
        policy = job.get("policy") or {}
        show = job.get("progress")
        warm = warm_up(lambda: runner.infer(x), policy, _progress("warm-up") if show else None)
        times, peak = timed_runs(lambda: runner.infer(x), policy,
                                 _progress("measure") if show else None)
        info = runner.info()
    finally:
        runner.deactivate()
    return {"agent_version": AGENT_VERSION, "engine": info.engine,
            "engine_version": info.engine_version, "threads": job.get("threads"),
            "batch": int(x.shape[0]), "load_s": load_s, "first_inference_ms": first_s * 1e3,
            "warmup": warm, "stats": summarize(times, x.shape[0]),
            "times_ms": [t * 1e3 for t in times], "rss_before_load_mb": rss_before,
            "peak_rss_mb": max(peak, process_peak_rss_mb()), "fingerprint": machine_fingerprint(),
            "output": first.tolist()}


class Session:
    """The ``--serve`` state: at most one loaded runner."""

    def __init__(self):
        self.runner = None

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "info":
            out = {"agent_version": AGENT_VERSION, "device": machine_fingerprint(),
                   "engines": engines_here()}
            if req.get("modules"):  # lets a test prove what the agent imports
                out["modules"] = sorted({m.split(".")[0] for m in sys.modules})
            return out
        if op == "load":
            self.close()
            t0 = time.perf_counter()
            self.runner = open_runner(req["engine"], req["artifact"], req.get("threads"),
                                      req.get("options"), req.get("metadata"))
            info = self.runner.info()
            spec = self.runner.input_spec()
            return {"engine": info.engine, "engine_version": info.engine_version,
                    "precision": info.precision, "input_name": spec.name,
                    "input_shape": list(spec.shape), "load_s": time.perf_counter() - t0,
                    "device": machine_fingerprint()}
        if op == "infer":
            if self.runner is None:
                raise ValueError("no artifact loaded: send a 'load' request first")
            out = self.runner.infer(decode_array(req["x"]))
            return {"y": encode_array(out), "seconds": self.runner.last_inference_time}
        raise ValueError(f"unknown request {op!r}")

    def close(self):
        if self.runner is not None:
            self.runner.deactivate()
            self.runner = None


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def serve(stdin=None, stdout=None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    session = Session()
    try:
        for line in stdin:
            if not line.strip():
                continue
            try:
                req = json.loads(line)
                if req.get("op") == "quit":
                    stdout.write(REPLY_MARK + json.dumps({"ok": True}) + "\n")
                    stdout.flush()
                    break
                reply = {"ok": True, **session.handle(req)}
            except Exception as exc:  # every failure is one line the host can show
                reply = {"ok": False, "error": _error_text(exc)}
            stdout.write("\n" + REPLY_MARK + json.dumps(reply) + "\n")  # engines may print too
            stdout.flush()
    finally:
        session.close()
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--serve"]:
        return serve()
    if len(argv) != 1:
        print(ERROR_MARK + "usage: agent.pyz JOB.json | agent.pyz --serve", flush=True)
        return 2
    try:
        with open(argv[0]) as fh:
            job = json.load(fh)
        result = run_job(job)
    except Exception as exc:  # report every failure as one line the toolchain can show
        print(ERROR_MARK + _error_text(exc), flush=True)
        return 2
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
