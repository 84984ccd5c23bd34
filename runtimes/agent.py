"""The device side: one serving session that drives the runtimes runners.

This module runs wherever an artifact runs: here in a fresh process, on an
ssh host, or on the emulated ARM64 device. It is shipped there inside a
zipapp (:mod:`runtimes.bundle`) together with the runners, the measurement
(:mod:`runtimes.measure`) and the artifact metadata contract, and imports
only the standard library, numpy and the engine: the engines load through
:func:`runtimes.create_runner`, exactly as on the host, so target options
reach the engine (or are rejected) everywhere.

``python agent.pyz --serve`` reads one JSON request per line on stdin and
answers each with one ``SHUFFLENET-AGENT-REPLY {json}`` line on stdout
(engines may print other lines; a ``latency`` request's progress comes first,
on the same stream and so in order, as ``SHUFFLENET-AGENT-PROGRESS <phase> <runs>``):

* ``{"op": "describe"}``: the device (:func:`runtimes.machine.machine_fingerprint`)
  and its engines with their versions;
* ``{"op": "open", "engine", "artifact", "metadata", "threads", "options",
  "affinity"}``: load one artifact (the host's metadata travels with it, so a
  device without ``onnx`` never parses an ONNX file);
* ``{"op": "infer", "x": ARRAY}``: a preprocessed NCHW batch in, logits out;
* ``{"op": "latency", "x": ARRAY, "policy", "progress"}``: :func:`runtimes.measure.measure`
  on the open runner;
* ``{"op": "close"}`` the runner, ``{"op": "quit"}`` the session.

An ``ARRAY`` is ``{"shape", "dtype", "b64"}`` (raw little-endian bytes):
logits come back bit for bit. A failed request answers ``{"ok": false,
"error": one line}`` and the session goes on.
"""
from __future__ import annotations

import base64
import json
import os
import sys
import time

import numpy as np

from shufflenet.artifact import Artifact, resolve_artifact

from . import ENGINES, create_runner
from ._lazy import engine_installed
from .machine import machine_fingerprint, set_affinity
from .measure import measure

REPLY_MARK = "SHUFFLENET-AGENT-REPLY "
PROGRESS_MARK = "SHUFFLENET-AGENT-PROGRESS "   # "<phase> <runs done>", before the reply
AGENT_VERSION = 3


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
def engines_here() -> dict:
    """``{engine: version or None}`` for every engine whose module is importable here."""
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


def describe(modules: bool = False) -> dict:
    """What this device is and which engines it has (``modules``: what the agent imported)."""
    out = {"agent_version": AGENT_VERSION, "device": machine_fingerprint(),
           "engines": engines_here(),
           # which Python serves: a device started with a link to a venv's python outside the
           # venv would run the base interpreter, without the venv's packages
           "interpreter": {"executable": sys.executable, "prefix": sys.prefix}}
    if modules:  # lets a test prove what the agent imports
        out["modules"] = sorted({m.split(".")[0] for m in sys.modules})
    return out


class Session:
    """The serving state: at most one open runner; ``out`` is the reply stream."""

    def __init__(self, out=None):
        self.runner, self.out = None, out or sys.stdout
        # the CPUs this process started with: an open without affinity gets them back
        # (an agent kept for the next artifact must not keep the last one's pinning)
        self.cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None

    def _progress(self, phase: str, count: int, every: int = 5) -> None:
        if count % every == 0:
            self.out.write(f"\n{PROGRESS_MARK}{phase} {count}\n")
            self.out.flush()

    def handle(self, req: dict) -> dict:
        op = req.get("op")
        if op == "describe":
            return describe(bool(req.get("modules")))
        if op == "open":
            return self.open(req)
        if op == "close":
            self.close()
            return {}
        if op in ("infer", "latency") and self.runner is None:
            raise ValueError(f"no artifact open: send an 'open' request before {op!r}")
        if op == "infer":
            out = self.runner.infer(decode_array(req["x"]))
            return {"y": encode_array(out), "seconds": self.runner.last_inference_time}
        if op == "latency":
            result = measure(self.runner, decode_array(req["x"]), req.get("policy"),
                             self._progress if req.get("progress") else None, whole_process=True)
            return {"result": result.to_wire()}
        raise ValueError(f"unknown request {op!r}")

    def open(self, req: dict) -> dict:
        self.close()
        set_affinity(req.get("affinity") or self.cpus)  # before the engine starts its threads
        path = req["artifact"]
        art = (Artifact.from_metadata(path, req["metadata"]) if req.get("metadata")
               else resolve_artifact(path))
        t0 = time.perf_counter()
        self.runner = create_runner(req["engine"], art, threads=req.get("threads"),
                                    **dict(req.get("options") or {})).activate()
        info, spec = self.runner.info(), self.runner.input_spec()
        return {"engine": info.engine, "engine_version": info.engine_version,
                "precision": info.precision, "input_name": spec.name,
                "input_shape": list(spec.shape), "load_s": time.perf_counter() - t0,
                "device": machine_fingerprint()}

    def close(self):
        if self.runner is not None:
            self.runner.deactivate()
            self.runner = None


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__


def serve(stdin=None, stdout=None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    session = Session(stdout)
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
    if argv != ["--serve"]:
        print("usage: agent.pyz --serve  (one JSON request per line on stdin)", file=sys.stderr)
        return 2
    return serve()


if __name__ == "__main__":
    sys.exit(main())
