"""Stage execution with caching by input hash.

A stage declares its inputs (a JSON-able dict: hashes of files it reads,
options it depends on) and returns outputs; outputs that are files are
recorded with their sha256. Re-running skips a stage whose inputs hash is
unchanged and whose output files are still there with the same hashes.
``force`` names stages to redo regardless.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shufflenet.checkpoint import sha256_file
from shufflenet.errors import ShuffleNetError, first_line

from .record import RunRecord, StageRecord, _flatten, stable_hash


class StageFailed(ShuffleNetError):
    """A stage stopped on an unexpected error; the line names the log with its traceback."""


def stage_error_line(stage: str, exc: BaseException, run_dir: Path) -> str:
    """One line for ``exc``; its full traceback written to ``logs/<stage>/error.log``."""
    path = Path(run_dir) / "logs" / stage / "error.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(traceback.format_exception(exc)))
    return (f"{stage} stage stopped: {type(exc).__name__}: {first_line(exc)} "
            f"(traceback: {path})")


@dataclass
class StageResult:
    outputs: dict = field(default_factory=dict)   # name -> Path (file) or plain value
    metrics: dict = field(default_factory=dict)
    gates: list = field(default_factory=list)     # [{"name", "passed", "detail"}]


@dataclass
class Stage:
    name: str
    inputs: Callable[[dict], dict]       # ctx -> inputs dict (hashed)
    run: Callable[[dict], StageResult]   # ctx -> result
    description: str = ""


def _outputs_intact(rec: StageRecord) -> bool:
    for value in rec.outputs.values():
        if isinstance(value, dict) and "path" in value:
            p = Path(value["path"])
            if not p.exists():
                return False
            if value.get("sha256") and p.is_file() and sha256_file(p) != value["sha256"]:
                return False
    return True


def _record_outputs(outputs: dict) -> dict:
    out = {}
    for k, v in outputs.items():
        if isinstance(v, Path):
            out[k] = {"path": str(v), "sha256": sha256_file(v) if v.is_file() else ""}
        else:
            out[k] = v
    return out


def _short(value, width: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= width else text[:width - 3] + "..."


def changed_inputs(old: dict, new: dict, limit: int = 3) -> list[str]:
    """The inputs that differ, e.g. ``["val_fingerprint 9e38d4307b0a -> 5e33c3c185e2"]``.

    >>> changed_inputs({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 3}, "d": 4})
    ['b.c 2 -> 3', 'd (new) 4']
    """
    # compare as run.json holds them (a tuple in the live inputs is a list once saved)
    old, new = (json.loads(json.dumps(x or {}, default=str)) for x in (old, new))
    fa, fb = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(fa) | set(fb)):
        if key not in fa:
            out.append(f"{key} (new) {_short(fb[key])}")
        elif key not in fb:
            out.append(f"{key} (gone, was {_short(fa[key])})")
        elif fa[key] != fb[key]:
            out.append(f"{key} {_short(fa[key])} -> {_short(fb[key])}")
    return out[:limit] + ([f"and {len(out) - limit} more"] if len(out) > limit else [])


def cache_miss_reason(name: str, rec: StageRecord, inputs: dict, digest: str, force: set) -> str:
    """Why ``name`` runs instead of coming from the cache, in one line."""
    if name in force:
        return f"--force {name}"
    if rec.status == "pending" and not rec.inputs_hash:
        return "first run in this directory"
    if rec.status in ("failed", "running"):
        return f"its last attempt ended {'with an error' if rec.status == 'failed' else 'unfinished'}"
    if rec.inputs_hash != digest:
        changed = changed_inputs(rec.inputs, inputs)
        return "input changed: " + ("; ".join(changed) if changed else "(recorded inputs unreadable)")
    return f"output missing or modified: {', '.join(_damaged_outputs(rec)) or '?'}"


def _damaged_outputs(rec: StageRecord) -> list[str]:
    out = []
    for key, value in rec.outputs.items():
        if isinstance(value, dict) and "path" in value:
            p = Path(value["path"])
            if not p.exists() or (value.get("sha256") and p.is_file()
                                  and sha256_file(p) != value["sha256"]):
                out.append(f"{key} ({p})")
    return out


def _dropped_notes(old: StageRecord, new_metrics: dict, reason: str) -> list[dict]:
    """Notes the last run of this stage showed that this run no longer does, and why."""
    before = (old.metrics or {}).get("notes") or [] if old.status in ("done", "cached") else []
    now = set((new_metrics or {}).get("notes") or [])
    return [{"note": n, "because": reason} for n in before if n not in now]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_relative(path, run_dir: Path) -> str:
    """``path`` relative to the run directory when it lies inside it (run.json moves with it)."""
    p = Path(path)
    return str(p.relative_to(run_dir)) if p.is_relative_to(run_dir) else str(p)


def artifact_row(result, run_dir: Path) -> dict:
    """An export result as run.json records it: its fields, ``size_kb`` over all its files,
    the path relative to the run directory."""
    row = result.to_dict()
    size = sum(Path(f).stat().st_size for f in result.files if Path(f).is_file())
    row["size_kb"] = round(size / 1024, 1)
    row["path"] = run_relative(result.path, run_dir)
    return row


def run_stage(stage: Stage, ctx: dict, record: RunRecord, run_dir: Path, force: set) -> StageRecord:
    """Run or skip one stage, updating and saving ``record``; returns its record."""
    inputs = stage.inputs(ctx)
    digest = stable_hash(inputs)
    rec = record.stage(stage.name)
    if (stage.name not in force and rec.status in ("done", "cached") and rec.inputs_hash == digest
            and _outputs_intact(rec)):
        rec.status, rec.cache_miss = "cached", ""
        log(f"[{stage.name}] unchanged inputs -- cached ({rec.seconds:.1f}s last time)")
        ctx[stage.name] = rec
        record.save(run_dir)
        return rec
    reason = cache_miss_reason(stage.name, rec, inputs, digest, force)
    log(f"[{stage.name}] {stage.description} (not cached: {reason})...")
    # the stage may want to know how its last attempt ended (e.g. to resume it)
    ctx.setdefault("_previous", {})[stage.name] = rec
    ctx["_digest"] = digest
    new = StageRecord(stage.name, status="running", inputs_hash=digest, inputs=inputs,
                      cache_miss=reason)
    record.stages[stage.name] = new
    record.save(run_dir)
    start = time.perf_counter()
    try:
        result = stage.run(ctx)
    except ShuffleNetError as exc:
        new.status, new.error = "failed", str(exc)
        new.seconds = time.perf_counter() - start
        record.save(run_dir)
        raise
    except Exception as exc:  # a bug or an engine's own error: one line, the traceback in a log
        new.status = "failed"
        new.error = f"{type(exc).__name__}: {exc}"
        new.seconds = time.perf_counter() - start
        record.save(run_dir)
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("mindspore"):
            raise                   # the CLI says how to install it
        raise StageFailed(stage_error_line(stage.name, exc, run_dir)) from None
    new.seconds = round(time.perf_counter() - start, 3)
    new.outputs = _record_outputs(result.outputs)
    new.metrics = result.metrics
    dropped = _dropped_notes(rec, result.metrics, reason)
    if dropped:
        new.metrics = dict(result.metrics, notes_dropped=dropped)
        for d in dropped:
            log(f"[{stage.name}] note no longer shown ({reason}): {d['note']}")
    new.gates = result.gates
    new.status = "done"
    ctx[stage.name] = new
    record.save(run_dir)
    # passed None (a NOT JUDGED latency gate) is neither a pass nor a failure
    failed = [g["name"] for g in new.gates if g.get("passed") is False]
    log(f"[{stage.name}] done in {new.seconds:.1f}s" + (f"; FAILED gates: {', '.join(failed)}" if failed else ""))
    return new
