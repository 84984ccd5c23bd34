"""The pipeline's quantization-aware fine-tuning stage (``--qat auto|always|off``, docs/qat.md).

After export: ``always`` fine-tunes the run's fp32 checkpoint through int8
(:func:`toolchain.qat.fine_tune_int8`) and exports ``onnx-int8`` from the QAT
checkpoint; ``auto`` does so only when the post-training ``onnx-int8`` missed
its accuracy budget (``budget_met`` False in its metadata, from the export's
int8 search); ``off`` leaves the stage out. When QAT ran, its artifact is the
``onnx-int8`` that parity (against the fp32 checkpoint, the ordinary accuracy
delta) and bench judge; the post-training artifact stays in ``artifacts/``,
named in this stage's metrics with why it was replaced, and its budget gate is
marked superseded (kept in run.json, not counted in the verdict).

A failure is one line (:class:`QATFailed`; an unexpected error's traceback goes to
``logs/qat/error.log``, as for every stage); the stage records it and the run fails.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from exporters import export_checkpoint
from shufflenet.artifact import read_artifact_metadata
from shufflenet.checkpoint import read_metadata
from shufflenet.errors import ConfigError, ShuffleNetError
from toolchain.qat import QAT_DEFAULTS, fine_tune_int8

from .parity_stage import data_fingerprint, eval_data_spec, train_data_spec
from .report_text import qat_best_text
from .stage_cache import Stage, StageResult, artifact_row, log, run_relative

BUDGET_GATE_PREFIX = "onnx-int8 accuracy budget"


class QATFailed(ShuffleNetError):
    """The qat stage stopped: one line saying why."""


def post_training(ctx) -> dict:
    """The export stage's ``onnx-int8`` and its budget result (``budget_met`` None: not judged)."""
    rec = (ctx["export"].outputs or {}).get("onnx-int8")
    if not isinstance(rec, dict) or not rec.get("path"):
        return {"artifact": None, "budget_met": None}
    found = read_artifact_metadata(rec["path"]).get("export_options", {}).get("int8", {})
    return {"artifact": rec["path"], "sha256": rec.get("sha256"),
            **{k: found.get(k) for k in ("budget_met", "drop_pp", "max_drop_pp", "metric",
                                         "heldout_samples", "method", "fp32_layers")}}


def budget_text(ptq: dict) -> str:
    """``missed its 1.0 pp budget (3.33 pp expected images lost, 64 held-out training images)``"""
    word = {True: "met", False: "missed", None: "did not judge"}[ptq.get("budget_met")]
    measured = (f" ({ptq['drop_pp']} pp {ptq.get('metric')}, {ptq.get('heldout_samples')} held-out "
                f"training images)" if ptq.get("drop_pp") is not None else
                " (no held-out training images)")
    return f"{word} its {ptq.get('max_drop_pp')} pp budget{measured}"


def qat_decision(mode: str, ptq: dict) -> tuple[bool, str]:
    """``(run QAT?, why)`` for ``--qat mode`` given the post-training int8 result.

    >>> qat_decision("auto", {"budget_met": True, "max_drop_pp": 1.0, "drop_pp": 0.2,
    ...                       "metric": "expected images lost", "heldout_samples": 64})[0]
    False
    >>> qat_decision("always", {"budget_met": True})
    (True, '--qat always')
    """
    if mode == "always":
        return True, "--qat always"
    met = ptq.get("budget_met")
    text = f"post-training onnx-int8 {budget_text(ptq)}"
    if met is False:
        return True, f"--qat auto: {text}"
    if met is True:
        return False, f"--qat auto: {text}, so QAT is not needed (--qat always runs it anyway)"
    return False, (f"--qat auto: {text}: no evidence that QAT is needed (--qat always runs it "
                   "anyway)")


def _kept_epoch(best_ckpt) -> dict | None:
    """The metrics row of the epoch the trainer kept as best, read from that checkpoint (the
    trainer's rule, :func:`~shufflenet.train.run_checkpoints.epoch_metric`, decided it)."""
    if not best_ckpt:
        return None
    meta = read_metadata(best_ckpt)
    return {**(meta.get("metrics") or {}), "epoch": meta.get("epoch")}


def qat_stage(opts, cfg, run_dir: Path, checkpoint_of) -> Stage:
    out_dir = run_dir / "qat"
    art_dir = run_dir / "artifacts_qat"

    def overrides(ctx) -> dict:
        """QAT's options: the pipeline's data (as export calibrates on it), --qat-set, the budget."""
        given = {}
        data = train_data_spec(opts, cfg)
        if data is not None:          # else the data the checkpoint names, as export does
            given.update({k: v for k, v in data.items() if v is not None},
                         val_split=cfg.val_split)
        given.update(opts.qat_overrides or {})
        if opts.qat_minutes is not None:
            given["time_budget_minutes"] = float(opts.qat_minutes)
        return given

    def decide(ctx):
        ptq = post_training(ctx)
        return (ptq, *qat_decision(opts.qat, ptq))

    def inputs(ctx):
        ptq, runs, _ = decide(ctx)
        key = {"mode": opts.qat, "runs": runs}
        if opts.qat == "auto":    # the decision rests on it; a skip names its numbers
            key["post_training"] = {k: v for k, v in ptq.items() if k != "artifact"}
        if runs:
            ckpt = checkpoint_of(ctx)
            key.update(checkpoint_sha256=ctx["checkpoint_sha256"], overrides=overrides(ctx),
                       qat_defaults=QAT_DEFAULTS, calib_samples=opts.calib_samples,
                       train_fingerprint=data_fingerprint(opts, cfg, ckpt, "train"),
                       val_fingerprint=data_fingerprint(opts, cfg, ckpt, "val"))
        return key

    def run(ctx):
        ptq, runs, why = decide(ctx)
        if not runs:
            log(f"[qat] not run: {why}")
            return StageResult(metrics={"ran": False, "reason": why, "post_training": ptq})
        ckpt = checkpoint_of(ctx)
        log(f"[qat] fine-tuning {ckpt} through int8 ({why}) -> {out_dir}")
        prev = ctx.get("_previous", {}).get("qat")
        # resume only an interrupted run of the same inputs, as the train stage does
        resume = ((out_dir / "last.ckpt").exists() and prev is not None
                  and prev.status in ("running", "failed") and prev.inputs_hash == ctx["_digest"])
        for d in ([] if resume else [out_dir]) + [art_dir]:
            if d.exists():
                shutil.rmtree(d)
        try:
            qrun = fine_tune_int8(ckpt, out_dir, dict(overrides(ctx), progress=opts.progress),
                                  resume=resume)
            if qrun.checkpoint is None:
                raise ConfigError(f"QAT wrote no checkpoint in {out_dir}")
            log(f"[qat] exporting onnx-int8 from {qrun.checkpoint}")
            (res,) = export_checkpoint(str(qrun.checkpoint), ["onnx-int8"], art_dir,
                                       progress=opts.progress,
                                       val_data=eval_data_spec(opts, cfg, ckpt))
        except ShuffleNetError as exc:
            raise QATFailed(f"qat: {exc}") from None
        result = qrun.result
        best = _kept_epoch(result.best_ckpt) or {}
        row = artifact_row(res, run_dir)
        metrics = {
            "ran": True, "reason": why, "resumed": bool(resume),
            "checkpoint": str(qrun.checkpoint), "checkpoint_is": (
                "best on the val split" if result.best_ckpt else "last epoch (no val split)"),
            "validated": qrun.validated, "notes": list(qrun.notes),
            "epochs": len(result.history), "epochs_planned": int(qrun.config["epoch_size"]),
            "lr": qrun.config["lr"], "train_seconds": result.seconds,
            **{f"best_{k}": best.get(k) for k in ("val_top1", "val_expected_lost",
                                                  "val_logit_error", "val_agreement", "epoch")},
            "history": [{k: r.get(k) for k in ("epoch", "loss", "val_top1", "val_expected_lost",
                                                "val_logit_error", "val_agreement",
                                                "epoch_seconds")}
                        for r in result.history],
            "artifact": {k: row[k] for k in ("format", "path", "sha256", "seconds",
                                             "smoke_error", "size_kb", "problem")},
            "post_training": ptq,
            "replaced": {"artifact": run_relative(ptq["artifact"], run_dir) if ptq.get("artifact")
                         else None, "why": why},
        }
        log(f"[qat] {metrics['epochs']} epoch(s) in {result.seconds:.1f}s"
            + (f", {qat_best_text(metrics)}" if best else "") + f"; onnx-int8 from QAT: {res.path}")
        return StageResult(outputs={"checkpoint": Path(qrun.checkpoint),
                                    "onnx-int8": Path(res.path)}, metrics=metrics)

    return Stage("qat", inputs, run, "quantization-aware fine-tuning for onnx-int8")


def supersede_budget_gate(record) -> None:
    """Mark the post-training int8 budget gate superseded when the qat stage replaced that
    artifact (and unmark it when it did not): kept in run.json with the reason, not counted."""
    export, qat = record.stages.get("export"), record.stages.get("qat")
    replaced = (qat is not None and qat.status in ("done", "cached")
                and "onnx-int8" in (qat.outputs or {}))
    for gate in (export.gates if export is not None else []):
        if not str(gate.get("name", "")).startswith(BUDGET_GATE_PREFIX):
            continue
        if replaced:
            gate["superseded"] = ("the qat stage replaced this artifact; parity judges the QAT "
                                  "onnx-int8 against the fp32 checkpoint")
        else:
            gate.pop("superseded", None)
