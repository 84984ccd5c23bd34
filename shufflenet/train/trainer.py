"""The training loop: recipe in, checkpoints and metrics out.

>>> result = train("demo", {"ckpt_save_dir": "runs/demo", "progress": False})  # doctest: +SKIP
>>> result = train("demo", {"ckpt_save_dir": "runs/demo"}, resume=True)         # doctest: +SKIP
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..checkpoint import read_checkpoint
from ..config import TrainConfig, make_config, recipe_dict, settle_num_classes
from ..data.pipeline import (
    eval_loader,
    fixed_loader,
    open_source,
    steps_per_epoch,
    train_loader,
)
from ..device import init_context
from ..errors import CheckpointError, ConfigError
from ..quant import load_qat_network, load_qat_teacher, start_checkpoint
from ..validate import evaluate, predict
from . import build
from .distributed import data_parallel_world
from .run_checkpoints import CheckpointManager, epoch_metric, ranked_by, read_metrics
from .schedules import build_lr

log = logging.getLogger(__name__)

# QAT's cached teacher logits (qat_teacher auto): kept in memory up to this size
TEACHER_CACHE_BYTES = 1 << 30


def postfix_interval(cfg) -> int:
    """Steps between refreshes of the loss/lr/img/s line: ``log_interval``, as its help says."""
    return max(1, int(cfg.get("log_interval") or 1))


@dataclass
class TrainResult:
    """Where a run's outputs are and how it ended."""
    run_dir: Path
    best_ckpt: Path | None
    last_ckpt: Path | None
    metrics: dict = field(default_factory=dict)  # the final epoch's row
    history: list = field(default_factory=list)  # every metrics.jsonl row
    seconds: float = 0.0
    model: object = field(default=None, repr=False)  # the trained network (this process)


def _metadata(cfg, net, classes, fingerprint, epoch, global_step, step_in_epoch, metrics) -> dict:
    return {"model": cfg.model, "num_classes": int(net.num_classes),
            "in_channels": int(cfg.in_channels), "image_size": int(cfg.image_resize),
            "labels": list(classes), "mean": list(cfg.mean), "std": list(cfg.std),
            "crop_pct": float(cfg.crop_pct), "interpolation": cfg.interpolation,
            "epoch": int(epoch), "global_step": int(global_step),
            "step_in_epoch": int(step_in_epoch), "recipe": recipe_dict(cfg),
            "metrics": metrics, "data_fingerprint": fingerprint,
            "toolchain_version": __version__}


def _emit(line: str, progress: bool) -> None:
    if progress:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)
    log.info(line)


class _Run:
    """State of one training run (one process; rank 0 writes)."""
    def __init__(self, cfg: TrainConfig) -> None:
        import mindspore as ms

        from ..models import create_model

        self.cfg = cfg
        self.target = init_context(cfg.device_target, cfg.mode, cfg.num_threads)
        self.rank, self.world = data_parallel_world(cfg)
        ms.set_seed(int(cfg.seed))
        np.random.seed(int(cfg.seed))
        self.train_src = open_source(cfg, cfg.train_split)
        self.classes = self.train_src.classes
        self.val_src = (open_source(cfg, cfg.val_split, classes=self.classes)
                        if cfg.val_while_train else None)
        self.fingerprint = self.train_src.fingerprint()
        # a MindCV recipe's ImageNet head on the user's 10-class folder is settled
        # here, not discovered at export (same rule as the pipeline's pre-flight)
        note = settle_num_classes(cfg, len(self.classes))
        if note and self.rank == 0:
            log.warning(note)
        n_cls = cfg.num_classes
        # starting weights: none when resuming (restore() loads them), else
        # --ckpt_path or --pretrained; a head of another class count is swapped
        start_from = not (cfg.resume or cfg.resume_opt)
        teacher = None
        if cfg.get("qat"):  # the int8 export's own graph, fake-quantised (shufflenet.quant)
            self.net = load_qat_network(start_checkpoint(cfg))[0]
            if cfg.get("qat_loss", "distill") == "distill":
                # the same graph in float with the start's (the fp32 checkpoint's) values
                teacher = load_qat_teacher(start_checkpoint(cfg))
        else:
            self.net = create_model(cfg.model, num_classes=n_cls, in_channels=cfg.in_channels,
                                    drop_rate=cfg.drop_rate,
                                    pretrained=start_from and cfg.pretrained and not cfg.ckpt_path,
                                    checkpoint_path=(cfg.ckpt_path or None) if start_from else None)
        if cfg.freeze_bn:
            build.freeze_batchnorm(self.net)
        self.teacher = teacher          # QAT distillation: also the yardstick of validation
        for net in (self.net, teacher):
            if net is not None:
                build.prepare_network(net, cfg, self.target)
        self.spe = steps_per_epoch(len(self.train_src), cfg, self.world)
        if self.spe == 0:
            raise ConfigError(f"{len(self.train_src)} training images give no full batch of "
                              f"{cfg.batch_size} per device; lower batch_size")
        # the teacher is frozen: its logits per image are computed once, not per step
        self.train_images = None       # with them, the preprocessed images when they fit
        self.teacher_targets = self._teacher_targets() if teacher is not None else None
        self._teacher_val = None
        self.lr = build_lr(cfg, self.spe)
        self.optimizer = build.create_optimizer(self.net, cfg, self.lr)
        self.amp = build.resolve_amp(cfg, self.target)
        cached = self.teacher_targets is not None
        self.step_cell = build.build_train_cell(self.net, cfg, self.optimizer, self.amp,
                                                teacher=None if cached else teacher,
                                                logit_targets=cached)
        self.step_cell.set_train(True)
        self.ckpts = CheckpointManager(cfg.ckpt_save_dir, cfg.model, cfg.ckpt_save_policy,
                                       cfg.keep_checkpoint_max, enabled=self.rank == 0)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0

    def _teacher_targets(self):
        """QAT distillation's targets: the teacher's logits on every training image through
        the eval preprocessing (``qat_teacher`` cached, or auto when they fit in
        :data:`TEACHER_CACHE_BYTES`), or None (live: the teacher runs on each augmented batch)."""
        cfg, n = self.cfg, len(self.train_src)
        mode = cfg.get("qat_teacher") or "auto"
        size = n * int(cfg.num_classes or len(self.classes)) * 4
        show = bool(cfg.progress) and self.rank == 0
        if mode == "live" or (mode == "auto" and size > TEACHER_CACHE_BYTES):
            if mode == "auto":
                _emit(f"QAT: the fp32 teacher runs on every batch (its logits on {n} images "
                      f"would take {size / 2 ** 30:.1f} GiB; --qat_teacher cached keeps them "
                      "anyway)", show)
            return None
        t0 = time.perf_counter()
        # the preprocessed images are fixed too: kept when they also fit (no decode per epoch)
        pixels = n * 4 * int(cfg.in_channels) * int(cfg.image_resize) ** 2
        keep = size + pixels <= TEACHER_CACHE_BYTES
        loader = eval_loader(self.train_src, cfg)
        out = predict(self.teacher, loader, progress=show, desc="teacher logits",
                      keep_inputs=keep)
        targets, self.train_images = out if keep else (out, None)
        if loader.skipped.count:   # each stands in for its next readable image, every epoch
            log.warning("%d unreadable training images were replaced by their neighbours "
                        "(first: %s)", loader.skipped.count, "; ".join(loader.skipped.first))
        _emit(f"QAT: distilling toward the fp32 teacher's logits on the {n} training images, "
              f"un-augmented, computed once ({time.perf_counter() - t0:.1f} s"
              f"{'; the images kept in memory' if keep else ''}; --qat_teacher live runs the "
              "teacher on each augmented batch instead)", show)
        return targets

    # -- state ---------------------------------------------------------
    def meta(self, metrics: dict | None = None) -> dict:
        meta = _metadata(self.cfg, self.net, self.classes, self.fingerprint, self.epoch,
                         self.global_step, self.step_in_epoch, metrics or {})
        meta["world_size"] = int(self.world)  # the step position means nothing for another world
        meta.update(getattr(self.net, "checkpoint_metadata", dict)())  # e.g. the QAT graph
        if self.teacher is not None:    # what the distillation's targets were (qat_teacher)
            meta["qat_teacher"] = "cached" if self.teacher_targets is not None else "live"
        return meta

    def restore(self, path: Path) -> None:
        """Weights, optimizer moments, LR position (optimizer global_step), epoch, step."""
        import mindspore as ms

        params, meta = read_checkpoint(path)
        if meta.get("model") not in (None, self.cfg.model):
            raise CheckpointError(f"{path} is a {meta.get('model')} run, not {self.cfg.model}")
        if meta.get("world_size", self.world) != self.world:
            # steps per epoch, the data shard of each rank and the global batch all depend on
            # it: continuing the position under another world silently trains something else
            raise CheckpointError(
                f"{path} was written by a run of {meta['world_size']} data-parallel rank(s), this "
                f"one has {self.world}: resume with the same --devices x --nodes "
                f"({meta['world_size']} ranks), or train afresh in another --ckpt_save_dir")
        if "global_step" not in meta or "epoch" not in meta:
            raise CheckpointError(f"{path} has no training position (epoch/global_step) "
                                  f"to resume from")
        state = {k: ms.Parameter(v, name=k) if not isinstance(v, ms.Parameter) else v
                 for k, v in params.items()}
        missing, _ = ms.load_param_into_net(self.step_cell, state, strict_load=True)
        missing = [m for m in missing if not m.startswith(("scale_sense", "current_iterator_step",
                                                             "last_overflow_iterator_step"))]
        if missing:
            raise CheckpointError(f"{path} lacks training state for: {', '.join(missing[:5])} "
                                  f"(a weights-only checkpoint? use --ckpt_path to fine-tune)")
        self.epoch = int(meta["epoch"])
        self.step_in_epoch = int(meta.get("step_in_epoch", 0))
        self.global_step = int(meta["global_step"])
        if meta.get("data_fingerprint") and meta["data_fingerprint"] != self.fingerprint:
            log.warning("resuming on different training data than the checkpoint was trained on")
        _emit(f"resumed from {path}: epoch {self.epoch + 1}, step {self.step_in_epoch}, "
              f"global step {self.global_step}", self.cfg.progress and self.rank == 0)

    def save_last(self) -> None:
        self.ckpts.save_last(self.step_cell, self.meta())

    # -- loop -----------------------------------------------------------
    def run_epoch(self) -> dict:
        import mindspore as ms
        from tqdm import tqdm

        cfg = self.cfg
        # uint8 NHWC batches from the native engine, normalised where the network runs
        if self.teacher_targets is not None:   # labels: the teacher's logits per image
            loader = fixed_loader(self.train_src, cfg, self.teacher_targets, self.epoch,
                                  self.step_in_epoch, self.rank, self.world,
                                  images=self.train_images)
        else:
            loader = train_loader(self.train_src, cfg, self.epoch, self.step_in_epoch,
                                  self.rank, self.world, uint8=True)
        show = bool(cfg.progress) and self.rank == 0
        losses, seen, t0 = [], 0, time.perf_counter()
        refresh = postfix_interval(cfg)
        with tqdm(total=self.spe, initial=self.step_in_epoch, file=sys.stderr, leave=False,
                  desc=f"epoch {self.epoch + 1}/{cfg.epoch_size}", unit="step",
                  disable=not show, dynamic_ncols=True) as bar:
            for images, labels in loader:
                out = self.step_cell(loader.to_network(images), ms.Tensor(labels))
                loss = float((out[0] if isinstance(out, tuple) else out).asnumpy())
                if not math.isfinite(loss) and self.amp == "O0":
                    raise ConfigError(f"loss became {loss} at global step {self.global_step}; "
                                      f"lower lr (now {self.lr[self.global_step]:.4g})")
                losses.append(loss)
                seen += len(labels)
                self.global_step += 1
                self.step_in_epoch += 1
                bar.update(1)
                if self.step_in_epoch % refresh == 0 or self.step_in_epoch == self.spe:
                    bar.set_postfix(loss=f"{loss:.4f}",
                                    lr=f"{self.lr[min(self.global_step, len(self.lr)) - 1]:.4g}",
                                    img_s=f"{seen * self.world / (time.perf_counter() - t0):.1f}")
                if (cfg.ckpt_save_steps and self.step_in_epoch % cfg.ckpt_save_steps == 0
                        and self.step_in_epoch < self.spe):
                    self.save_last()
        secs = time.perf_counter() - t0
        row = {"epoch": self.epoch + 1, "global_step": self.global_step,
               "loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": float(self.lr[self.global_step - 1]), "epoch_seconds": round(secs, 3),
               "img_per_s": round(seen * self.world / secs, 2) if secs > 0 else None,
               "skipped_images": loader.skipped.count}
        if loader.skipped.count:
            log.warning("epoch %d: %d unreadable images replaced (first: %s)", self.epoch + 1,
                        loader.skipped.count, "; ".join(loader.skipped.first))
        return row

    def validate(self) -> dict:
        show = bool(self.cfg.progress) and self.rank == 0
        if self.teacher is not None and self._teacher_val is None:   # frozen: once per run
            self._teacher_val = predict(self.teacher, eval_loader(self.val_src, self.cfg),
                                        progress=show, desc="teacher val")
        res = evaluate(self.net, eval_loader(self.val_src, self.cfg), progress=show,
                       reference=self._teacher_val)
        self.net.set_train(True)
        self.step_cell.set_train(True)
        row = {"val_top1": res["top1"], "val_top5": res["top5"], "val_loss": res["loss"]}
        if "logit_error" in res:       # against the teacher: what ranks a distilled run
            row.update(val_expected_lost=res["expected_lost"], val_agreement=res["agreement"],
                       val_logit_error=res["logit_error"])
        return row


def train(config=None, overrides: dict | None = None, resume: bool | None = None) -> TrainResult:
    """Train per ``config`` (a recipe name/path/dict or a :class:`TrainConfig`).

    ``overrides`` use MindCV's option names. ``resume=True`` continues the run
    in ``ckpt_save_dir`` from its ``last.ckpt`` (weights, optimizer moments,
    LR position, epoch and step); ``ckpt_path`` + ``resume_opt`` resumes from
    that file instead. Progress goes to stderr (``progress=False`` silences it).
    """
    if isinstance(config, TrainConfig) and not overrides:
        cfg = TrainConfig(config)  # a copy: the caller's config is never changed
    else:
        cfg = make_config(dict(config) if isinstance(config, TrainConfig) else config, overrides)
    if resume is not None:
        cfg["resume"] = bool(resume)
    start = time.perf_counter()
    run_dir = Path(cfg.ckpt_save_dir)
    run = _Run(cfg)
    resume_from = None
    if cfg.resume:
        resume_from = run.ckpts.last_path
        if not resume_from.exists():
            raise CheckpointError(f"nothing to resume: {resume_from} does not exist "
                                  f"(train once without --resume first)")
    elif cfg.ckpt_path and cfg.resume_opt:
        resume_from = Path(cfg.ckpt_path)
    if resume_from is not None:
        run.restore(resume_from)
    elif run.rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "recipe.json").write_text(json.dumps(recipe_dict(cfg), indent=1, default=str))
    show = bool(cfg.progress) and run.rank == 0
    if show:
        _emit(f"training {cfg.model} on {cfg.dataset} ({len(run.train_src)} images, "
              f"{len(run.classes)} classes) on {run.target}"
              f"{f' x{run.world}' if run.world > 1 else ''}, amp {run.amp}, "
              f"{run.spe} steps/epoch x {cfg.epoch_size} epochs -> {run_dir}", True)
    last_row: dict = {}
    while run.epoch < cfg.epoch_size:
        if run.step_in_epoch >= run.spe:  # killed after the last step, before the epoch's end
            run.step_in_epoch = 0
        row = run.run_epoch()
        metric = None
        if run.val_src is not None and ((run.epoch + 1) % max(1, cfg.val_interval) == 0
                                        or run.epoch + 1 == cfg.epoch_size):
            row.update(run.validate())
            metric = epoch_metric(row)
        run.epoch += 1
        run.step_in_epoch = 0
        row["seconds_total"] = round(time.perf_counter() - start, 2)
        meta = run.meta(row)
        # weights only: what export, parity and fine-tuning consume
        run.ckpts.save_epoch(run.net, run.epoch, run.global_step, metric, meta,
                             epoch_file=(run.epoch % max(1, cfg.ckpt_save_interval) == 0
                                         or run.epoch == cfg.epoch_size),
                             rank_by=ranked_by(row))
        run.ckpts.save_last(run.step_cell, meta)
        run.ckpts.append_metrics(row)
        last_row = row
        budget = cfg.get("time_budget_minutes")
        if budget and time.perf_counter() - start > 60 * float(budget) and run.epoch < cfg.epoch_size:
            _emit(f"time budget of {budget:g} min spent after epoch {run.epoch}/{cfg.epoch_size}; "
                  f"--resume continues the run", True)
            break
        if show:
            val = (f", val top-1 {row['val_top1']:.2%} top-5 {row['val_top5']:.2%}"
                   if "val_top1" in row else "")
            if "val_expected_lost" in row:
                val += (f", vs fp32: {100 * row['val_expected_lost']:.2f} pp expected lost, "
                        f"agreement {row['val_agreement']:.2%}, logit error "
                        f"{row['val_logit_error']:.4f}")
            _emit(f"epoch {run.epoch}/{cfg.epoch_size}: loss {row['loss']:.4f}, "
                  f"lr {row['lr']:.4g}, {row['img_per_s']} img/s, {row['epoch_seconds']:.1f} s"
                  f"{val}", True)
    best = run.ckpts.best_path if run.ckpts.best_path.exists() else None
    last = run.ckpts.last_path if run.ckpts.last_path.exists() else None
    history = read_metrics(run_dir)
    return TrainResult(run_dir, best, last, last_row or (history[-1] if history else {}),
                       history, round(time.perf_counter() - start, 2), run.net)
