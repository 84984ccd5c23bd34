"""The pipeline's evidence: int8 calibrated on the user's train split, parity on their val split.

* Calibration (export stage): the training split the pipeline trained on --
  or, with ``--ckpt_path`` and no ``--dataset``, the one the checkpoint's
  metadata names -- through :func:`exporters.export_checkpoint`.
* Parity: every labelled image of the val split (capped by ``--samples``),
  so each pair has an accuracy delta with its interval and a three-valued
  verdict. Without labelled data: the stand-in photos, said so in the report
  and in run.json, and no accuracy claim.
* Calibration and parity never share an image: both record per-image
  digests, the stage checks they are disjoint and stores both fingerprints.
"""
from __future__ import annotations

from pathlib import Path

from shufflenet.artifact import DEFAULT_IMAGE_SIZE, read_artifact_metadata
from shufflenet.checkpoint import read_metadata
from shufflenet.data.pipeline import open_source
from shufflenet.errors import ShuffleNetError
from toolchain.parity import run_parity
from toolchain.parity.inputs import dataset_inputs
from toolchain.parity.writers import write_markdown

from .bench_stage import resolved_artifacts
from .device_parity import plan_device_checks, planned_key, run_device_checks
from .stage_cache import Stage, StageResult, log

NO_LABELS_NOTE = ("no labelled data reachable: parity ran on stand-in photos; agreement only, "
                  "no accuracy claim")


def train_data_spec(opts, cfg) -> dict | None:
    """The training split int8 calibrates on, or None to let the checkpoint's metadata decide."""
    if opts.ckpt_path and not ({"dataset", "data_dir"} & set(opts.overrides)):
        return None                    # the pipeline's recipe says nothing about this checkpoint
    return {"dataset": str(cfg.dataset), "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
            "train_split": cfg.train_split}


def eval_data_spec(opts, cfg, checkpoint) -> dict:
    """The labelled data validate and parity judge ``checkpoint`` on.

    ``{"dataset", "data_dir", "val_split", "named_by"}``: the pipeline's data,
    or -- with ``--ckpt_path`` and no ``--dataset``/``--data_dir`` -- the data
    the checkpoint's metadata names (as calibration does); ``dataset`` is None
    when the checkpoint names none.
    """
    if train_data_spec(opts, cfg) is not None:
        return {"dataset": str(cfg.dataset), "data_dir": str(cfg.data_dir) if cfg.data_dir else None,
                "val_split": cfg.val_split, "named_by": "pipeline"}

    recipe = read_metadata(checkpoint).get("recipe") or {}
    return {"dataset": recipe.get("dataset"), "data_dir": recipe.get("data_dir"),
            "val_split": recipe.get("val_split") or "val", "named_by": "checkpoint"}


def data_fingerprint(opts, cfg, checkpoint, split: str = "val") -> str | None:
    """Content fingerprint (file names, sizes, labels) of the ``val`` or ``train`` split that
    validate/parity (val) or int8 calibration (train) read: part of those stages' cache keys,
    so images added to or replaced in a folder are judged again, not served from the cache.
    None when the data cannot be opened (pre-flight names that)."""
    spec = eval_data_spec(opts, cfg, checkpoint)
    if not spec["dataset"]:
        return None
    if split == "train":
        recipe = read_metadata(checkpoint).get("recipe") or {}
        name = (cfg.train_split if spec["named_by"] == "pipeline"
                else recipe.get("train_split") or "train")
    else:
        name = spec["val_split"]
    view = {"dataset": spec["dataset"], "data_dir": spec["data_dir"],
            "image_resize": int(read_metadata(checkpoint).get("image_size") or DEFAULT_IMAGE_SIZE),
            "dataset_download": False}
    try:
        return open_source(view, name).fingerprint()
    except (ShuffleNetError, OSError, TypeError, KeyError):
        return None


def checkpoint_data_problem(opts, cfg, checkpoint) -> str | None:
    """One line when the data the checkpoint names (``--ckpt_path``, no ``--dataset``) cannot be
    opened: validate's top-1 and parity's accuracy would otherwise judge it on other data."""
    spec = eval_data_spec(opts, cfg, checkpoint)
    if spec["named_by"] != "checkpoint":
        return None
    if not spec["dataset"]:
        return (f"{checkpoint} names no dataset in its metadata: pass --dataset (and --data_dir) "
                f"so validate and parity judge it on its own data")
    view = {"dataset": spec["dataset"], "data_dir": spec["data_dir"], "image_resize": 32,
            "dataset_download": False}
    try:
        open_source(view, spec["val_split"])
    except (ShuffleNetError, OSError, TypeError, KeyError) as exc:
        return (f"the data {checkpoint} was trained on ({spec['data_dir'] or spec['dataset']}, "
                f"split {spec['val_split']}) is not reachable: {exc}; pass --dataset/--data_dir")
    return None


def val_inputs(opts, cfg, checkpoint: str, samples: int | None):
    """``(InputSet or None, note)``: the labelled val split, or None (stand-in photos)."""
    meta = read_metadata(checkpoint)
    spec = eval_data_spec(opts, cfg, checkpoint)
    split = spec["val_split"]
    if not spec.get("dataset"):
        return None, "the checkpoint names no dataset"
    try:
        # opened as validate and `shufflenet parity --dataset` open it: one image set, one fingerprint
        return dataset_inputs(spec["dataset"], spec.get("data_dir"), split, samples,
                              int(meta.get("image_size") or DEFAULT_IMAGE_SIZE),
                              meta.get("labels")), ""
    except (ShuffleNetError, OSError, TypeError, KeyError) as exc:
        return None, f"val split {split!r} of {spec.get('data_dir') or spec['dataset']} not reachable: {exc}"


def _calibration_of(artifacts: dict, export_record) -> dict | None:
    """The int8 artifact's calibration and search (its metadata), with the timings of its
    export (search seconds, fp32 / int8-all / mixed latency), which stay out of the file."""
    art = artifacts.get("onnx-int8")
    if not art:
        return None
    opts = art.metadata.get("export_options", {})
    int8 = dict(opts.get("int8", {}))
    calibration = dict(opts.get("calibration", {}))
    ptq = ((getattr(export_record, "outputs", None) or {}).get("onnx-int8") or {}).get("path")
    if opts.get("qat") and ptq and str(ptq) != str(art.path):
        # a QAT artifact (the qat stage) carries no per-image digests of the calibration its
        # start used; that calibration drew from the same training split as the post-training
        # export's, whose digests the disjointness check compares instead
        shown = read_artifact_metadata(ptq).get("export_options", {})
        if not calibration.get("images_sha256"):
            calibration = dict(shown.get("calibration", {}),
                               note="digests of the post-training export's calibration (the QAT "
                                    "start calibrated on the same training split)")
        # the int8 search row describes the post-training artifact QAT replaced: say so
        int8 = dict(shown.get("int8", {}), replaced_by_qat=opts["qat"])
        return {"calibration": calibration, "int8": int8}
    for row in (getattr(export_record, "metrics", None) or {}).get("artifacts", []):
        if row.get("format") == "onnx-int8":
            int8.update((row.get("details") or {}).get("int8") or {})
    return {"calibration": calibration, "int8": int8}


def _row(p, name_of) -> dict:
    m = p.metrics or {}
    acc = m.get("accuracy") or {}
    div = getattr(p, "divergence", None)
    return {
        "artifact": name_of.get(str(Path(p.artifact)), Path(p.artifact).name),
        "engine": p.engine, "ran_on": p.ran_on, "engine_version": p.engine_version,
        "device": p.device, "precision": (p.profile or {}).get("name"),
        "n": m.get("samples"),
        "max_abs": m.get("max_abs_error"), "max_rel": m.get("max_rel_error"),
        "cosine": m.get("min_cosine"), "mean_cosine": m.get("mean_cosine"), "psnr": m.get("psnr_db"),
        "top1_agreement": m.get("top1_agreement"), "top5_overlap": m.get("top5_overlap"),
        "reference_top1": acc.get("reference_accuracy"),     # fractions, as validate()
        "candidate_top1": acc.get("candidate_accuracy"),
        "acc_delta": (f"{acc['delta'] * 100:+.2f}pp [{acc['ci_low'] * 100:+.2f}, "
                      f"{acc['ci_high'] * 100:+.2f}]") if "delta" in acc else None,
        "first_divergence": getattr(div, "first_divergent", None) if div else None,
        "verdict": p.status, "samples_needed": p.samples_needed,
        "summary": p.summary() if p.status != "PASS" else "",
    }


def parity_stage(opts, cfg, run_dir: Path, artifacts_of, checkpoint_of) -> Stage:
    def inputs(ctx):
        return {"checkpoint_sha256": ctx["checkpoint_sha256"],
                "artifacts": {k: v.get("sha256") for k, v in artifacts_of(ctx).items()},
                "dataset": ctx["dataset"], "data": train_data_spec(opts, cfg),
                "val_fingerprint": data_fingerprint(opts, cfg, checkpoint_of(ctx), "val"),
                "samples": opts.parity_samples, "allow_inconclusive": opts.allow_inconclusive,
                "devices": planned_key(opts.target_names, opts.targets_file,
                                       resolved_artifacts(ctx, artifacts_of))}

    def run(ctx):
        arts = resolved_artifacts(ctx, artifacts_of)
        ckpt = str(checkpoint_of(ctx))
        inputs_set, why = val_inputs(opts, cfg, ckpt, opts.parity_samples)
        notes = []
        if inputs_set is None:
            notes.append(f"{NO_LABELS_NOTE} ({why})")
            log(f"[parity] {notes[-1]}")
        report = run_parity(ckpt, list(arts.values()), samples=opts.parity_samples,
                            progress=opts.progress, allow_inconclusive=opts.allow_inconclusive,
                            inputs=inputs_set)
        report.notes += notes
        checks, device_notes = plan_device_checks(opts.target_names, opts.targets_file, arts)
        for note in device_notes:
            log(f"[parity] {note}")
        device_pairs, more = run_device_checks(ckpt, checks, inputs_set, opts.parity_samples,
                                               opts.progress, opts.allow_inconclusive)
        report.pairs += device_pairs
        report.notes += device_notes + more
        calib = _calibration_of(arts, ctx.get("export"))
        fingerprints = {"parity": report.inputs.get("sha256"), "parity_source": report.inputs.get("source"),
                        "parity_samples": report.inputs.get("samples"),
                        "parity_labelled": report.inputs.get("labelled")}
        gates = []
        if calib:
            c = calib["calibration"]
            fingerprints.update(calibration=c.get("fingerprint"), calibration_source=c.get("source"),
                                calibration_samples=c.get("samples"),
                                heldout=c.get("heldout_fingerprint"))
            calib_digests = set(c.get("images_sha256") or [])
            parity_digests = {i["sha256"][:16] for i in report.inputs.get("images", [])}
            shared = len(calib_digests & parity_digests)
            fingerprints["shared_images"] = shared
            gates.append({"name": "calibration and parity images are disjoint",
                          "passed": shared == 0,
                          "detail": f"{shared} parity image(s) were used for calibration"
                                    if shared else f"{len(calib_digests)} calibration vs "
                                                   f"{len(parity_digests)} parity images"})
        write_markdown(report, run_dir / "parity.md")
        name_of = {str(Path(v)): k for k, v in arts.items()}
        rows = [_row(p, name_of) for p in report.pairs]
        for p, r in zip(report.pairs, rows):
            detail = r["summary"] or (r["first_divergence"] or "")
            on = f" @ {r['ran_on']}" if p.device.get("where", "local") != "local" else ""
            name = f"parity {r['artifact']} on {r['engine']}{on}"
            if p.status == "INCONCLUSIVE":
                need = (f", ~{p.samples_needed} labelled val images would settle it"
                        if p.samples_needed else "")
                name += f" INCONCLUSIVE{need}{' (allowed)' if p.passed else ''}"
            elif p.status != "PASS":
                name += f" {p.status}"
            gates.append({"name": name, "passed": p.passed, "verdict": p.status, "detail": detail})
        metrics = {"pairs": rows, "inputs": {k: v for k, v in report.inputs.items() if k != "images"},
                   "fingerprints": fingerprints, "notes": report.notes,
                   "accuracy_claim": bool(report.inputs.get("labelled")),
                   "verdict": report.verdict}
        if calib:
            metrics["int8"] = calib["int8"]
            metrics["calibration"] = {k: v for k, v in calib["calibration"].items()
                                      if k != "images_sha256"}
        return StageResult(outputs={"parity_report": run_dir / "parity.md"}, metrics=metrics,
                           gates=gates)

    return Stage("parity", inputs, run, "checking parity of every artifact")
