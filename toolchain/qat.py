"""Quantization-aware fine-tuning of a trained fp32 checkpoint for ``onnx-int8`` (docs/qat.md).

One place for what ``shufflenet train --qat`` and the pipeline's ``qat`` stage
both do: settle the run's config from the fp32 checkpoint (its model, data,
preprocessing and recipe; QAT's own LR and length), write the start checkpoint
(the int8 export's graph with its post-training ranges), fine-tune it with the
trainer, validating on the checkpoint's val split when it has one.

It lives in ``toolchain/`` because it joins the trainer (``shufflenet``) and the
int8 export's graph (``exporters.qat_start``).

>>> run = fine_tune_int8("runs/fp32/shufflenet_v2_x0_5_best.ckpt", "runs/qat",
...                      {"epoch_size": 2})                        # doctest: +SKIP
>>> run.checkpoint, run.validated, run.result.metrics.get("val_top1")   # doctest: +SKIP
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from exporters.qat_start import write_qat_start
from shufflenet.checkpoint import read_metadata
from shufflenet.config import OPTIONS, TrainConfig, make_config
from shufflenet.data.pipeline import open_source
from shufflenet.errors import ConfigError, ShuffleNetError
from shufflenet.quant import is_qat_checkpoint, start_checkpoint
from shufflenet.train import TrainResult, train

__all__ = ["QAT_DEFAULTS", "QATRun", "fine_tune_int8", "prepare_qat", "qat_config"]

# Quantization-aware fine-tuning: a few epochs at a low LR from the trained weights; the
# recipe's own LR and length are for training from scratch. Adam at 1e-5: the BatchNorm-folded
# weights have per-channel scales SGD cannot share one LR over -- distillation with the
# recipe's momentum SGD at 2e-4 doubled the logit error to fp32 in one epoch (0.038 -> 0.085 on
# the real-photo set), Adam at 1e-5 kept it (docs/qat.md has the measurements).
QAT_DEFAULTS = {"epoch_size": 3, "opt": "adam", "lr": 1e-5, "warmup_epochs": 0,
                "scheduler": "cosine_decay", "min_lr": 0.0}
# options that steer one run, never taken from the fp32 checkpoint's recipe
_RUN_KEYS = {"ckpt_path", "ckpt_save_dir", "resume", "resume_opt", "pretrained", "distribute",
             "qat", "time_budget_minutes", "progress", "val_while_train", "epoch_size",
             "max_steps_per_epoch", "num_samples"}
# what the fine-tuned network must share with the checkpoint it starts from
_FROM_CHECKPOINT = {"model": "model", "image_resize": "image_size", "in_channels": "in_channels",
                    "num_classes": "num_classes", "mean": "mean", "std": "std",
                    "crop_pct": "crop_pct", "interpolation": "interpolation"}


@dataclass
class QATRun:
    """How a QAT fine-tuning ended: the trainer's result, the config it ran and what to know."""
    result: TrainResult
    config: TrainConfig
    validated: bool                 # a val split judged every epoch: best_ckpt is the best one
    notes: list = field(default_factory=list)

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint to export: the best on the val split, else the last epoch's."""
        return self.result.best_ckpt or self.result.last_ckpt


def qat_config(fp32_ckpt, out_dir, overrides: dict | None = None, recipe=None) -> TrainConfig:
    """The raw config of a QAT run of ``fp32_ckpt`` into ``out_dir`` (before :func:`prepare_qat`):
    ``recipe`` (optional) <- ``overrides`` (MindCV option names) <- the QAT keys."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    given.update(qat=True, ckpt_path=str(fp32_ckpt), ckpt_save_dir=str(out_dir))
    return make_config(recipe, given)


def _val_problem(cfg) -> str | None:
    """None when the run's val split can be opened and has images, else why not (one line)."""
    try:
        n = len(open_source(cfg, cfg["val_split"]))
    except (ShuffleNetError, OSError, TypeError, KeyError, ValueError) as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None if n else f"split {cfg['val_split']!r} of {cfg.get('data_dir') or cfg['dataset']} is empty"


def prepare_qat(cfg, explicit: set) -> list[str]:
    """Settle a QAT config and write the run's start checkpoint (the int8 export's graph with its
    post-training ranges) unless resuming; returns notes for the user (one line each).

    ``explicit``: the options the caller gave (they win over the checkpoint's recipe and
    :data:`QAT_DEFAULTS`). Without an explicit ``val_while_train`` the run validates every
    epoch on the data's val split when it has one (and keeps a best checkpoint), and says so
    in a note when it has none.
    """
    if not cfg.get("ckpt_path"):
        raise ConfigError("--qat fine-tunes a trained checkpoint: pass --ckpt_path FP32.ckpt")
    meta = read_metadata(cfg["ckpt_path"])
    if is_qat_checkpoint(meta):
        raise ConfigError(f"--ckpt_path {cfg['ckpt_path']} is a QAT checkpoint: pass the fp32 "
                          "checkpoint, or --resume the QAT run in its --ckpt_save_dir")
    for key, meta_key in _FROM_CHECKPOINT.items():
        have = meta.get(meta_key)
        if have is None:
            continue
        if key in explicit and str(cfg[key]) != str(have):
            raise ConfigError(f"--{key} {cfg[key]} contradicts the checkpoint's {meta_key}={have}: "
                              "QAT fine-tunes the checkpoint as it was trained")
        cfg[key] = have
    # the checkpoint's own recipe (data, augmentation, batch, loss): MindCV's ImageNet defaults
    # (random crops down to 8 %) on a 64 px texture set cost 12 pp of val top-1 in one epoch
    recipe = meta.get("recipe") or {}
    for key, value in recipe.items():
        if key in OPTIONS and key not in explicit and key not in _RUN_KEYS and value is not None:
            cfg[key] = value
    for key, value in QAT_DEFAULTS.items():
        if key not in explicit:
            cfg[key] = value
    if "decay_epochs" not in explicit:
        cfg["decay_epochs"] = cfg["epoch_size"] - cfg["warmup_epochs"]
    notes = []
    # the fp32 recipe's val_while_train is a run key (its own run's choice); QAT judges every
    # epoch on the val split when there is one: fake-quant fine-tuning can lose accuracy
    # (docs/qat.md: -2.79 pp on the demo), and the best epoch is the one to export
    if "val_while_train" not in explicit:
        problem = _val_problem(cfg)
        cfg["val_while_train"] = problem is None
        if problem:
            notes.append(f"no val split to judge QAT on ({problem}): no best checkpoint is kept; "
                         "the last epoch's checkpoint is the result")
    start = start_checkpoint(cfg)
    if cfg.get("resume"):
        if not start.exists():
            raise ConfigError(f"nothing to resume: {start} does not exist (run --qat once "
                              "without --resume first)")
        return notes
    Path(cfg["ckpt_save_dir"]).mkdir(parents=True, exist_ok=True)
    write_qat_start(cfg["ckpt_path"], start, progress=bool(cfg.get("progress", True)),
                    train_data={k: cfg[k] for k in ("dataset", "data_dir", "train_split")})
    return notes


def fine_tune_int8(fp32_ckpt, out_dir, overrides: dict | None = None, *, recipe=None,
                   resume: bool = False, stream=sys.stderr) -> QATRun:
    """Fine-tune ``fp32_ckpt`` through int8 quantisation into ``out_dir``; one device.

    ``overrides``: MindCV option names (``epoch_size``, ``lr``, ``time_budget_minutes``,
    ``progress``, ``dataset``/``data_dir``, ...); they win over the checkpoint's recipe and
    :data:`QAT_DEFAULTS`. ``resume``: continue the run in ``out_dir`` from its ``last.ckpt``.
    Notes (e.g. no val split) go to ``stream`` as they are found. Export the result with
    ``export_checkpoint(run.checkpoint, ["onnx-int8"], ...)``.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    if resume:
        given["resume"] = True
    cfg = qat_config(fp32_ckpt, out_dir, given, recipe)
    explicit = set(given)
    notes = prepare_qat(cfg, explicit)
    for note in notes:
        if stream is not None:
            print(f"[qat] {note}", file=stream, flush=True)
    cfg["distribute"] = False       # one process: the fake-quant network is not data-parallel
    result = train(cfg, resume=bool(cfg.get("resume")))
    return QATRun(result, cfg, bool(cfg.get("val_while_train")), notes)
