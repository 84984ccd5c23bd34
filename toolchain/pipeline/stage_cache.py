"""Stage execution with caching by input hash.

A stage declares its inputs (a JSON-able dict: hashes of files it reads,
options it depends on) and returns outputs; outputs that are files are
recorded with their sha256. Re-running skips a stage whose inputs hash is
unchanged and whose output files are still there with the same hashes.
``force`` names stages to redo regardless.
"""
from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from shufflenet.checkpoint import sha256_file
from shufflenet.errors import ShuffleNetError

from .record import RunRecord, StageRecord, stable_hash


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


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_stage(stage: Stage, ctx: dict, record: RunRecord, run_dir: Path, force: set) -> StageRecord:
    """Run or skip one stage, updating and saving ``record``; returns its record."""
    inputs = stage.inputs(ctx)
    digest = stable_hash(inputs)
    rec = record.stage(stage.name)
    if (stage.name not in force and rec.status in ("done", "cached") and rec.inputs_hash == digest
            and _outputs_intact(rec)):
        rec.status = "cached"
        log(f"[{stage.name}] unchanged inputs -- cached ({rec.seconds:.1f}s last time)")
        ctx[stage.name] = rec
        record.save(run_dir)
        return rec
    log(f"[{stage.name}] {stage.description}...")
    # the stage may want to know how its last attempt ended (e.g. to resume it)
    ctx.setdefault("_previous", {})[stage.name] = rec
    ctx["_digest"] = digest
    new = StageRecord(stage.name, status="running", inputs_hash=digest, inputs=inputs)
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
    except Exception as exc:  # keep the record truthful, then let the caller decide
        new.status = "failed"
        new.error = f"{type(exc).__name__}: {exc}"
        new.seconds = time.perf_counter() - start
        record.save(run_dir)
        traceback.print_exc(file=sys.stderr)
        raise
    new.seconds = round(time.perf_counter() - start, 3)
    new.outputs = _record_outputs(result.outputs)
    new.metrics = result.metrics
    new.gates = result.gates
    new.status = "done"
    ctx[stage.name] = new
    record.save(run_dir)
    # passed None (a NOT JUDGED latency gate) is neither a pass nor a failure
    failed = [g["name"] for g in new.gates if g.get("passed") is False]
    log(f"[{stage.name}] done in {new.seconds:.1f}s" + (f"; FAILED gates: {', '.join(failed)}" if failed else ""))
    return new
