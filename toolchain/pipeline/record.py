"""The versioned run record (``run.json``) and its diff.

One record per run directory. Stages append their inputs hash, outputs
(paths with sha256), metrics, gate results and timings; the record is
rewritten atomically after every stage so an interrupted run keeps what
it finished.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtimes.agent import machine_fingerprint
from shufflenet.fileio import atomic_write
from shufflenet.versions import package_versions

SCHEMA_VERSION = 1
RECORD_NAME = "run.json"


def stable_hash(obj: Any) -> str:
    """sha256 of a JSON-serialisable object with sorted keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class StageRecord:
    name: str
    status: str = "pending"  # pending | done | skipped (cached) | failed
    inputs_hash: str = ""
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)   # name -> {"path", "sha256"} or values
    metrics: dict = field(default_factory=dict)
    gates: list = field(default_factory=list)     # [{"name", "passed", "detail"}]
    seconds: float = 0.0
    error: str = ""
    # why the stage ran instead of being served from the cache ("" when cached)
    cache_miss: str = ""


@dataclass
class RunRecord:
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    updated: str = ""
    command: list = field(default_factory=list)
    commands: list = field(default_factory=list)  # every invocation that touched this run dir
    options: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    overrides: dict = field(default_factory=dict)
    data_fingerprint: str = ""
    versions: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    # world size, per-rank/global batch, LR as stated, msrun command line ({}: not trained here)
    distributed: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # name -> StageRecord (as dict on disk)
    passed: bool | None = None
    failed_gates: list = field(default_factory=list)
    # PASS | FAIL | INCONCLUSIVE (passed may be True for an INCONCLUSIVE run: --allow-inconclusive)
    verdict: str = ""

    # -- persistence ---------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = {k: (asdict(v) if isinstance(v, StageRecord) else v) for k, v in self.stages.items()}
        return d

    def save(self, run_dir: str | os.PathLike) -> Path:
        self.updated = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str)
        return atomic_write(Path(run_dir) / RECORD_NAME, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, run_dir: str | os.PathLike) -> "RunRecord | None":
        path = Path(run_dir) / RECORD_NAME
        if not path.exists():
            return None
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if d.get("schema_version") != SCHEMA_VERSION:
            return None
        stages = {k: StageRecord(**v) for k, v in d.pop("stages", {}).items()}
        known = {f for f in cls.__dataclass_fields__}
        rec = cls(**{k: v for k, v in d.items() if k in known})
        rec.stages = stages
        return rec

    def stage(self, name: str) -> StageRecord:
        if name not in self.stages:
            self.stages[name] = StageRecord(name)
        return self.stages[name]


def library_versions() -> dict:
    return {"python": platform.python_version(),
            **package_versions(("shufflenet-toolchain", "mindspore", "numpy", "onnx", "onnxruntime",
                                "openvino", "MNN", "ncnn", "matplotlib"))}


def device_fingerprint() -> dict:
    """The benchmark agent's machine fingerprint, plus total memory."""
    try:
        import psutil

        mem = psutil.virtual_memory().total
    except Exception:
        mem = None
    return {**machine_fingerprint(), "memory_bytes": mem}


# fields that name a row of a list of results: parity pairs by artifact + engine (+ where they
# ran), latency rows by target + artifact + engine, exports by format, gates by name
_IDENTITY = ("name", "format", "target", "artifact", "artifact_name", "engine", "ran_on", "metric")
# a list of more numbers than this is raw samples (per-iteration latencies): never compared
_SAMPLES = 8


def _identity(item: dict, index: int) -> str:
    parts = [str(item[k]) for k in _IDENTITY if item.get(k) not in (None, "")]
    return " / ".join(parts) if parts else str(index)


def flatten_parts(obj: Any, prefix: tuple = ()) -> dict:
    """``{path tuple: leaf}``; list items by identity (``"[onnx / onnxruntime]"``), never by
    position; lists of more than a few numbers (raw samples) left out."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_parts(v, prefix + (str(k),)))
    elif isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        seen: dict = {}
        for i, v in enumerate(obj):
            key = _identity(v, i)
            seen[key] = seen.get(key, 0) + 1
            key = key if seen[key] == 1 else f"{key} #{seen[key]}"
            out.update(flatten_parts(v, prefix + (f"[{key}]",)))
    elif not _raw_samples(obj):   # raw samples (per-run latencies): never part of a diff
        out[prefix] = obj
    return out


def _raw_samples(obj: Any) -> bool:
    return (isinstance(obj, list) and len(obj) > _SAMPLES
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj))


def _flatten(obj: Any, prefix: str = "") -> dict:
    """``{"a.b[onnx / onnxruntime].c": leaf}`` (see :func:`flatten_parts`)."""
    base = tuple(prefix.split(".")) if prefix else ()
    return {".".join(p).replace(".[", "["): v for p, v in flatten_parts(obj, base).items()}


_VOLATILE_TOP = ("created", "updated", "commands")
# what the user chose is never noise, whatever its name (bench_seconds)
_CHOSEN = ("options", "overrides", "recipe", "command")


def _volatile_parts(parts: tuple) -> bool:
    """Timestamps, measured durations and why-not-cached notes: they differ on every run."""
    if not parts or parts[0] in _VOLATILE_TOP:
        return True
    if parts[0] in _CHOSEN:
        return False
    leaf = parts[-1]
    # inputs_hash: the inputs themselves are compared, field by field
    return (leaf in ("seconds", "created", "updated", "cache_miss", "inputs_hash")
            or leaf.endswith("_seconds"))


def _volatile(key: str) -> bool:
    return _volatile_parts(tuple(key.split(".")))


def diff_parts(a: dict, b: dict) -> list[tuple[tuple, Any, Any]]:
    """Differences between two run records as ``(path tuple, a_value, b_value)``, in path order;
    timestamps, timings and raw samples left out."""
    def empty_is_none(flat):    # an empty list or dict says no more than an absent one
        return {k: v for k, v in flat.items() if v not in ([], {})}

    fa, fb = empty_is_none(flatten_parts(a)), empty_is_none(flatten_parts(b))
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if not _volatile_parts(k) and fa.get(k) != fb.get(k)]


def diff_records(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """Differences between two run records as ``(key, a_value, b_value)``.

    Timestamps and timings are left out: they always differ; so are raw samples.
    """
    return [(".".join(k).replace(".[", "["), va, vb) for k, va, vb in diff_parts(a, b)]


def counted_gates(gates: list[dict]) -> list[dict]:
    """The gates that judge a run: all but those a later stage superseded (the post-training
    int8 budget once the qat stage replaced that artifact), which run.json keeps with why."""
    return [g for g in gates if not g.get("superseded")]


def run_verdict(gates: list[dict]) -> str:
    """A run's verdict from its gates: FAIL when a gate failed outright, else INCONCLUSIVE when
    any gate was inconclusive (allowed or not), else PASS. Unjudged gates (passed None) count
    neither way, superseded ones not at all."""
    gates = counted_gates(gates)
    if any(g.get("passed") is False and g.get("verdict") != "INCONCLUSIVE" for g in gates):
        return "FAIL"
    return "INCONCLUSIVE" if any(g.get("verdict") == "INCONCLUSIVE" for g in gates) else "PASS"


def unjudged_gates(gates: list[dict]) -> list[dict]:
    """The gates that were NOT JUDGED (passed None): a latency budget on the wrong device class or
    model size, an int8 accuracy budget without held-out images."""
    return [g for g in counted_gates(gates) if g.get("passed") is None]


def not_judged_note(gates: list[dict]) -> str:
    """``"3 gates NOT JUDGED"`` (``""`` when every gate was judged), for a verdict headline: a
    plain "PASS" over unjudged gates would claim more than the run checked."""
    n = len(unjudged_gates(gates))
    return f"{n} gate{'s' if n != 1 else ''} NOT JUDGED" if n else ""


def not_judged_summary(gates: list[dict]) -> str:
    """The unjudged gates named and counted by kind, e.g. ``"3 gate(s): 2 latency (latency a;
    latency b), 1 other (onnx-int8 accuracy budget 2.0 pp ...)"``; ``""`` when there are none."""
    unjudged = unjudged_gates(gates)
    if not unjudged:
        return ""
    latency = [g["name"] for g in unjudged if str(g.get("name", "")).startswith("latency ")]
    # no table says why for these: the gate's own detail does
    other = [g["name"] + (f": {g['detail']}" if g.get("detail") else "")
             for g in unjudged if not str(g.get("name", "")).startswith("latency ")]
    parts = ([f"{len(latency)} latency ({'; '.join(latency)}; see the latency table for why)"]
             if latency else [])
    parts += [f"{len(other)} other ({'; '.join(other)})"] if other else []
    return f"{len(unjudged)} gate(s): " + ", ".join(parts)
