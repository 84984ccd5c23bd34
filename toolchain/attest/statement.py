"""The in-toto Statement v1 of a pipeline run, read from its ``run.json``.

Subjects: every file of every exported artifact (the model file, its
weights, its metadata and test-vector sidecars) by sha256. Predicate: what
they passed -- checkpoint sha256, data fingerprints, every parity verdict
with its numbers, device verdicts with where they ran, the bundled vectors,
toolchain and engine versions.
"""
from __future__ import annotations

from pathlib import Path

from exporters.vectors import read_vectors, vectors_path
from shufflenet.artifact import read_artifact_metadata, resolve_artifact
from shufflenet.errors import ShuffleNetError
from shufflenet.fileio import sha256_file
from toolchain.pipeline.record import RunRecord

from .errors import VerifyFailed

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/shufflenet-toolchain/attestation/run-verdicts/v1"
# bench row fields kept in the predicate (raw per-iteration samples stay in run.json)
_BENCH_KEYS = ("target", "artifact_name", "engine", "engine_version", "threads", "where",
               "p50", "p90", "p99", "peak_rss_mb", "verdict", "failed", "not_judged_reason",
               "budgets")


def _artifact_path(run_dir: Path, recorded: str) -> Path:
    p = Path(recorded)
    for cand in (p, run_dir / p, run_dir / "artifacts" / p.name):
        if cand.is_file():
            return cand
    raise VerifyFailed(f"artifact {recorded} named in {run_dir / 'run.json'} is missing")


def artifact_files(artifact) -> list[Path]:
    """Every file that makes up ``artifact`` (model, weights, metadata and vector sidecars)."""
    art = resolve_artifact(artifact)
    files = list(art.files)
    side = vectors_path(art.path)
    if side.exists():
        files.append(side)
    return files


def _stage(record: dict, name: str) -> dict:
    return (record.get("stages") or {}).get(name) or {}


def build_statement(run_dir) -> dict:
    """The statement for the run in ``run_dir``; refuses artifacts changed since the run."""
    run_dir = Path(run_dir)
    rec_obj = RunRecord.load(run_dir)
    if rec_obj is None:
        raise VerifyFailed(f"no run record (run.json) in {run_dir}: attest a pipeline run directory")
    record = rec_obj.to_dict()
    export = _stage(record, "export")
    if export.get("status") not in ("done", "cached") or not export.get("outputs"):
        raise VerifyFailed(f"the run in {run_dir} exported no artifacts (export stage "
                           f"{export.get('status') or 'missing'})")
    subjects, artifacts = [], []
    rows = {r.get("format"): r for r in (export.get("metrics") or {}).get("artifacts", [])}
    for fmt, out in sorted(export["outputs"].items()):
        path = _artifact_path(run_dir, out["path"])
        digest = sha256_file(path)
        if out.get("sha256") and digest != out["sha256"]:
            raise VerifyFailed(f"{path.name} changed since the run judged it (sha256 differs from "
                               f"run.json); re-run the pipeline before attesting")
        files = artifact_files(path)
        for f in files:
            subjects.append({"name": f.name, "digest": {"sha256": sha256_file(f)}})
        artifacts.append(_artifact_entry(fmt, path, files, rows.get(fmt) or {}))
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE,
            "predicate": _predicate(record, artifacts)}


def _artifact_entry(fmt: str, path: Path, files: list, row: dict) -> dict:
    meta = read_artifact_metadata(path)
    try:
        vec = read_vectors(path)
        vectors = {"count": vec["count"], "source": vec.get("source"),
                   "stand_in": bool(vec.get("stand_in")), "tolerances": vec.get("tolerances")}
    except ShuffleNetError as exc:
        vectors = {"count": 0, "problem": str(exc)}
    return {"format": fmt, "file": path.name, "files": [f.name for f in files],
            "precision": meta.get("precision"), "model": meta.get("model"),
            "source_sha256": meta.get("source_sha256"),
            "library_versions": meta.get("library_versions"),
            "export_smoke_error": row.get("smoke_error"), "export_tolerance": row.get("tolerance"),
            "export_problem": row.get("problem"), "test_vectors": vectors}


def _predicate(record: dict, artifacts: list) -> dict:
    validate, export = _stage(record, "validate"), _stage(record, "export")
    parity, bench = _stage(record, "parity"), _stage(record, "bench")
    pm = parity.get("metrics") or {}
    pairs = pm.get("pairs") or []
    ckpt_sha = (validate.get("inputs") or {}).get("checkpoint_sha256") or \
        (export.get("inputs") or {}).get("checkpoint_sha256")
    train_out = (_stage(record, "train").get("outputs") or {}).get("checkpoint") or {}
    checkpoint = {"sha256": ckpt_sha,
                  "name": Path(train_out.get("path") or (record.get("options") or {})
                               .get("ckpt_path") or "").name or None}
    calib = (export.get("inputs") or {}).get("calibration") or {}
    data = {"train_fingerprint": record.get("data_fingerprint") or None,
            "val_fingerprint": (validate.get("inputs") or {}).get("val_fingerprint"),
            "calibration_train_fingerprint": calib.get("train_fingerprint"),
            "parity": pm.get("fingerprints"), "validate_data": (validate.get("metrics") or {})
            .get("data")}
    devices = [{"artifact": p.get("artifact"), "engine": p.get("engine"),
                "engine_version": p.get("engine_version"), "where": p.get("ran_on"),
                "device": p.get("device"), "verdict": p.get("verdict"), "check": "parity"}
               for p in pairs if (p.get("device") or {}).get("where", "local") != "local"]
    devices += [dict({k: r.get(k) for k in _BENCH_KEYS}, check="latency")
                for r in (bench.get("metrics") or {}).get("results", [])]
    gates = [dict(g, stage=name) for name, st in (record.get("stages") or {}).items()
             for g in (st.get("gates") or [])]
    versions = dict(record.get("versions") or {})
    engines = sorted({f"{p.get('engine')} {p.get('engine_version')}" for p in pairs}
                     | {f"{d.get('engine')} {d.get('engine_version')}" for d in devices})
    return {
        "run": {k: record.get(k) for k in ("created", "updated", "command", "verdict", "passed",
                                           "failed_gates")},
        "checkpoint": checkpoint,
        "data": data,
        "validate": {k: (validate.get("metrics") or {}).get(k) for k in ("top1", "top5", "samples")},
        "artifacts": artifacts,
        "parity": {"verdict": pm.get("verdict"), "accuracy_claim": pm.get("accuracy_claim"),
                   "inputs": pm.get("inputs"), "pairs": pairs, "notes": pm.get("notes")},
        "devices": devices,
        "gates": gates,
        "toolchain": {"version": versions.pop("toolchain", None), "libraries": versions,
                      "engines": engines},
        "host": record.get("device"),
    }
