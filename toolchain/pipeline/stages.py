"""train -> validate -> export -> qat -> parity -> bench, with caching and a run record.

>>> from toolchain.pipeline import PipelineOptions, run_pipeline
>>> record = run_pipeline(PipelineOptions(run_dir="runs/demo"))   # doctest: +SKIP
>>> record.passed, record.failed_gates                             # doctest: +SKIP
"""
from __future__ import annotations

import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

from exporters import export_checkpoint
from exporters.int8_metrics import fp32_layers_text
from exporters.metadata import read_artifact_metadata
from shufflenet import __version__
from shufflenet.checkpoint import read_metadata, sha256_file
from shufflenet.config import make_config, recipe_dict
from shufflenet.data.pipeline import open_source
from shufflenet.data.preprocess import PREPROCESSING_VERSION
from shufflenet.device import quiet_mindspore
from shufflenet.errors import ConfigError
from shufflenet.train.launch import distributed_summary, resolve_spec, run_training
from shufflenet.train.run_checkpoints import read_metrics
from shufflenet.validate import validate

from .bench_stage import bench_stage
from .parity_stage import (
    checkpoint_data_problem,
    data_fingerprint,
    eval_data_spec,
    parity_stage,
    train_data_spec,
)
from .preflight import chosen_formats, preflight
from .qat_stage import qat_stage, supersede_budget_gate
from .quality_gate import CHANCE_GATE_VERSION, chance_gate
from .record import (
    RunRecord,
    counted_gates,
    device_fingerprint,
    library_versions,
    run_verdict,
)
from .run_options import STAGES, PipelineOptions, installed_formats, launch_spec
from .run_report import write_reports
from .secondary_node import train_on_secondary_node
from .stage_cache import Stage, StageResult, artifact_row, log, run_stage


def _train_config(opts: PipelineOptions, run_dir: Path):
    overrides = dict(opts.overrides)
    overrides["ckpt_save_dir"] = str(run_dir / "train")
    return make_config(opts.recipe, overrides)


def _data_fingerprint(cfg) -> str:
    return open_source(cfg, cfg.train_split).fingerprint()


# -- stages --------------------------------------------------------------
def _stage_train(cfg, spec, run_dir: Path) -> Stage:
    def inputs(ctx):
        recipe = recipe_dict(cfg)
        recipe.pop("ckpt_save_dir", None)
        # another world size is another global batch: retrain, never resume across it
        return {"recipe": recipe, "data_fingerprint": ctx["data_fingerprint"],
                "world_size": spec.world_size}

    def run(ctx):
        train_dir = Path(cfg.ckpt_save_dir)
        prev = ctx["_previous"].get("train")
        last = train_dir / "last.ckpt"
        # resume only a run of the same inputs that was interrupted
        resume = (last.exists() and prev is not None and prev.status in ("running", "failed")
                  and prev.inputs_hash == ctx["_digest"])
        if not resume and train_dir.exists():
            shutil.rmtree(train_dir)
        if resume:
            log(f"[train] resuming the interrupted run from {last}")
        outcome = run_training(cfg, spec, resume=resume, log_dir=train_logs(run_dir))
        result = outcome.result
        ckpt = result.best_ckpt or result.last_ckpt
        if ckpt is None:
            raise ConfigError("training wrote no checkpoint")
        metrics = {k: v for k, v in (result.metrics or {}).items()}
        metrics.update({"train_seconds": result.seconds, "checkpoint": str(ckpt),
                        "resumed": bool(resume), "epochs": len(result.history)})
        metrics["distributed"] = distributed_summary(cfg, outcome.spec, outcome.command)
        return StageResult(outputs={"checkpoint": Path(ckpt)}, metrics=metrics)

    return Stage("train", inputs, run, "training")


def train_logs(run_dir: Path) -> Path:
    """Where msrun's and every rank's logs go (outside train/, which a fresh start clears)."""
    return run_dir / "logs" / "train"


def _checkpoint(ctx) -> Path:
    return Path(ctx["checkpoint"])


def _stage_validate(opts: PipelineOptions, cfg) -> Stage:
    def data(ctx) -> dict:
        # --ckpt_path without --dataset: the data the checkpoint names, as calibration and parity
        spec = eval_data_spec(opts, cfg, _checkpoint(ctx))
        problem = checkpoint_data_problem(opts, cfg, _checkpoint(ctx))
        if problem:
            raise ConfigError(problem)
        return spec

    def inputs(ctx):
        spec = data(ctx)
        # the gate is part of the result: a new --min-top1 must not reuse the old verdict
        return {"checkpoint_sha256": ctx["checkpoint_sha256"], "dataset": spec["dataset"],
                "data_dir": str(spec["data_dir"]), "val_split": spec["val_split"],
                "val_fingerprint": data_fingerprint(opts, cfg, _checkpoint(ctx), "val"),
                "preprocessing_version": PREPROCESSING_VERSION,
                "min_top1_pct": opts.min_top1_pct, "chance_gate": CHANCE_GATE_VERSION}

    def run(ctx):
        spec = data(ctx)
        res = validate(ckpt_path=str(_checkpoint(ctx)), dataset=spec["dataset"],
                       data_dir=spec["data_dir"], val_split=spec["val_split"], batch_size=64,
                       device_target=cfg.device_target, mode=1, progress=opts.progress)
        res = dict(res, data={k: spec[k] for k in ("dataset", "data_dir", "val_split", "named_by")})
        gates = [chance_gate(res)]
        if opts.min_top1_pct is not None:
            gates.append(top1_gate(res["top1"], opts.min_top1_pct))
        return StageResult(metrics=res, gates=gates)

    return Stage("validate", inputs, run, "validating the checkpoint")


def top1_gate(top1: float, min_top1_pct: float) -> dict:
    """The --min-top1 gate; ``top1`` a fraction (validate() and run.json), the threshold in %.

    >>> top1_gate(0.29, 29)["passed"]          # 100 * 0.29 is 28.999999999999996
    True
    """
    top1_pct = 100.0 * top1
    return {"name": f"val top-1 >= {min_top1_pct}%", "passed": top1_pct >= min_top1_pct - 1e-9,
            "detail": f"{top1_pct:.2f}%"}


def _int8_gate(result) -> dict:
    """The int8 accuracy budget as a gate: not judged (None) without held-out images."""
    found = read_artifact_metadata(result.path).get("export_options", {}).get("int8", {})
    met = found.get("budget_met")
    detail = (result.problem or "; ".join(result.notes) or
              f"{found.get('metric')} {found.get('drop_pp')} pp on {found.get('heldout_samples')} "
              f"held-out training images, {fp32_layers_text(found)}")
    return {"name": f"onnx-int8 accuracy budget {found.get('max_drop_pp')} pp (held-out train)",
            "passed": met, "detail": detail}


def _stage_export(opts: PipelineOptions, cfg, run_dir: Path) -> Stage:
    def formats():
        return list(opts.formats) if opts.formats else installed_formats()

    def inputs(ctx):
        return {"checkpoint_sha256": ctx["checkpoint_sha256"], "formats": formats(),
                "calibration": {"train_data": train_data_spec(opts, cfg),
                                "train_fingerprint": (data_fingerprint(opts, cfg, _checkpoint(ctx),
                                                                       "train")
                                                      if "onnx-int8" in formats() else None),
                                "samples": opts.calib_samples,
                                "max_accuracy_drop_pp": opts.max_accuracy_drop_pp,
                                "search_seconds": opts.int8_search_seconds},
                "vectors_val_fingerprint": data_fingerprint(opts, cfg, _checkpoint(ctx), "val")}

    def run(ctx):
        out_dir = run_dir / "artifacts"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        names = formats()
        # int8 calibrates on the training split (never val: parity judges on val)
        results = export_checkpoint(str(_checkpoint(ctx)), names, out_dir,
                                    train_data=train_data_spec(opts, cfg),
                                    calib_samples=opts.calib_samples,
                                    max_accuracy_drop_pp=opts.max_accuracy_drop_pp,
                                    search_seconds=opts.int8_search_seconds,
                                    progress=opts.progress,
                                    # golden test vectors come from the val split parity judges on
                                    val_data=eval_data_spec(opts, cfg, _checkpoint(ctx)))
        rows, outputs, gates = [], {}, []
        for r in results:
            if r.format == "onnx-int8":
                gates.append(_int8_gate(r))
            rows.append(artifact_row(r, run_dir))
            outputs[r.format] = Path(r.path)
        return StageResult(outputs=outputs, metrics={"artifacts": rows}, gates=gates)

    return Stage("export", inputs, run, "exporting")


def _artifacts(ctx) -> dict:
    """``{format: {"path", "sha256"}}`` that parity and bench judge: the export stage's, with its
    onnx-int8 replaced by the qat stage's when that stage fine-tuned one."""
    out = {k: v for k, v in ctx["export"].outputs.items() if isinstance(v, dict) and "path" in v}
    qat = ctx.get("qat")
    if qat is not None and isinstance((qat.outputs or {}).get("onnx-int8"), dict):
        out["onnx-int8"] = qat.outputs["onnx-int8"]
    return out


def _stage_parity(opts: PipelineOptions, cfg, run_dir: Path) -> Stage:
    return parity_stage(opts, cfg, run_dir, _artifacts, _checkpoint)


def _stage_bench(opts: PipelineOptions, run_dir: Path) -> Stage:
    return bench_stage(opts, run_dir, _artifacts)


# -- the pipeline ---------------------------------------------------------
def run_pipeline(opts: PipelineOptions) -> RunRecord | None:
    """Run (or resume, or skip cached) every stage; returns the run record.

    With several nodes, a node other than 0 only takes part in training and
    returns None: node 0 writes the checkpoints and runs the later stages.

    Gate failures do not raise: ``record.passed`` is False and
    ``record.failed_gates`` names them. Errors in a stage raise.
    """
    quiet_mindspore()
    run_dir = Path(opts.run_dir)
    cfg = _train_config(opts, run_dir)
    # every option a later stage needs is checked here, before minutes of training
    checked = preflight(opts, cfg)
    force = set(STAGES) if "all" in opts.force else set(opts.force)
    spec = None
    if not opts.ckpt_path:
        spec, note = resolve_spec(cfg, launch_spec(opts))
        if note:
            log(f"[train] {note}")
        if spec.node_rank > 0:
            return train_on_secondary_node(cfg, spec, run_dir, train_logs(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    record = RunRecord.load(run_dir) or RunRecord(created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    record.command = list(opts.command or sys.argv)
    record.commands = (record.commands + [record.command])[-20:]
    record.options = {k: v for k, v in asdict(opts).items() if k not in ("command",)}
    record.overrides = dict(opts.overrides)
    record.versions = {"toolchain": __version__, **library_versions()}
    record.device = device_fingerprint()
    record.passed, record.failed_gates = None, []

    record.recipe = recipe_dict(cfg)
    ctx: dict = {"dataset": cfg.dataset}
    stages: list[Stage] = []
    if opts.ckpt_path:
        ckpt = Path(opts.ckpt_path)
        meta = read_metadata(ckpt)  # clear error when missing/corrupt
        ctx["checkpoint"] = str(ckpt)
        record.data_fingerprint = meta.get("data_fingerprint", "")
        record.stages.pop("train", None)
    else:
        source = checked.get("train_source")
        ctx["data_fingerprint"] = record.data_fingerprint = (
            source.fingerprint() if source is not None else _data_fingerprint(cfg))
        stages.append(_stage_train(cfg, spec, run_dir))
    stages += [_stage_validate(opts, cfg), _stage_export(opts, cfg, run_dir)]
    if opts.qat != "off" and "onnx-int8" in chosen_formats(opts):
        stages.append(qat_stage(opts, cfg, run_dir, _checkpoint))
    else:       # --qat off (today's pipeline), or no int8 to fine-tune for
        record.stages.pop("qat", None)
    stages += [_stage_parity(opts, cfg, run_dir), _stage_bench(opts, run_dir)]

    try:
        for stage in stages:
            if stage.name != "train" and "checkpoint_sha256" not in ctx:
                ctx["checkpoint_sha256"] = sha256_file(ctx["checkpoint"])
            run_stage(stage, ctx, record, run_dir, force)
            if stage.name == "train":
                ctx["checkpoint"] = record.stages["train"].outputs["checkpoint"]["path"]
    except BaseException:
        # a stage that stopped with an error fails the run; the reports must say so rather
        # than keep showing the previous run's verdict beside this run's run.json
        _in_stage_order(record)
        failed = [n for n, st in record.stages.items() if st.status in ("failed", "running")]
        record.passed, record.verdict = False, "FAIL"
        record.failed_gates = [f"{n} stage stopped with an error" for n in failed] or \
            ["a stage stopped with an error"]
        record.save(run_dir)
        try:
            write_run_reports(run_dir, record)
        except Exception:           # never mask the stage's own error; drop what is stale
            for name in ("report.md", "report.html"):
                (run_dir / name).unlink(missing_ok=True)
        raise

    supersede_budget_gate(record)
    _in_stage_order(record)
    train_rec = record.stages.get("train")
    record.distributed = (train_rec.metrics.get("distributed") or {}) if train_rec else {}
    # a gate with passed None (NOT JUDGED) neither fails the run nor counts as a pass
    gates = counted_gates([g for s in record.stages.values() for g in s.gates])
    failed = [g["name"] for g in gates if g.get("passed") is False]
    record.failed_gates = failed
    record.passed = not failed
    record.verdict = run_verdict(gates)
    record.save(run_dir)
    write_run_reports(run_dir, record)
    return record


def _in_stage_order(record: RunRecord) -> None:
    """Stages in pipeline order (a stage new to an old run directory was appended at the end)."""
    record.stages = {n: record.stages[n] for n in sorted(
        record.stages, key=lambda n: STAGES.index(n) if n in STAGES else len(STAGES))}


def write_run_reports(run_dir: Path, record: RunRecord):
    history = []
    train = record.stages.get("train")
    if train is not None and train.outputs.get("checkpoint"):
        history = read_metrics(Path(train.outputs["checkpoint"]["path"]).parent)
    return write_reports(run_dir, record.to_dict(), history)
