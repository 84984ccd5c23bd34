"""``shufflenet train -c RECIPE [options]``: MindCV's option names, both spellings.

The options are generated from :data:`shufflenet.config.OPTIONS`, so the
CLI, the YAML loader and the Python API accept exactly the same keys.
"""
from __future__ import annotations

import click

from exporters.qat_start import write_qat_start
from shufflenet.checkpoint import read_metadata
from shufflenet.config import OPTIONS, make_config
from shufflenet.errors import ConfigError
from shufflenet.quant import is_qat_checkpoint, start_checkpoint
from shufflenet.train.launch import distributed_summary, run_training

from ..options import json_option, launch_options, launch_spec
from ..output import echo_json, echo_table


def _option(key, opt):
    names = [f"--{key}"]
    if "_" in key:
        names.append(f"--{key.replace('_', '-')}")
    help_ = opt.help + ("" if opt.default in (None, "") else f" [MindCV default: {opt.default}]")
    if opt.type == "bool":
        # `--distribute` alone means true, as in MindCV; `--distribute false` also works.
        return click.option(*names, key, type=str, default=None, is_flag=False,
                            flag_value="true", metavar="[BOOL]", help=help_)
    if key == "mode":
        return click.option(*names, key, type=str, default=None, metavar="0|1|graph|pynative",
                            help=help_)
    if opt.type == "list":
        return click.option(*names, key, type=str, default=None, metavar="A,B,...", help=help_)
    ctype = {"int": int, "float": float}.get(opt.type, str)
    return click.option(*names, key, type=ctype, default=None, help=help_)


def _with_recipe_options(fn):
    for key in reversed(list(OPTIONS)):
        fn = _option(key, OPTIONS[key])(fn)
    return fn


@click.command(context_settings={"max_content_width": 100})
@click.option("-c", "--config", "recipe", default=None, metavar="RECIPE",
              help="Recipe name (demo, shufflenet_v2_1.0_ascend, ...) or a YAML path.")
@json_option
@launch_options
@_with_recipe_options
def train(recipe, as_json, devices, nodes, node_rank, master, **options):
    """Train a model from a recipe; progress on stderr, a summary on stdout.

    \b
    shufflenet train -c demo
    shufflenet train -c shufflenet_v2_1.0_ascend --data_dir /data/imagenet   # every local NPU
    shufflenet train -c demo --devices 2                     # 2 data-parallel ranks (msrun)
    shufflenet train -c shufflenet_v2_1.0_ascend --data_dir /data/imagenet --devices 8 \\
        --nodes 2 --node-rank 0 --master 10.0.0.1:8118       # on node 1: --node-rank 1
    shufflenet train -c demo --ckpt_save_dir runs/demo --resume
    shufflenet train --qat --ckpt_path runs/demo/best.ckpt --ckpt_save_dir runs/qat   # docs/qat.md
    """
    spec = launch_spec(devices, nodes, node_rank, master)
    overrides = {k: v for k, v in options.items() if v is not None}
    cfg = make_config(recipe, overrides)
    if cfg.get("qat"):
        if spec is not None and getattr(spec, "world_size", 1) > 1:
            raise click.ClickException("--qat fine-tunes on one device; drop --devices/--nodes")
        prepare_qat(cfg, set(overrides))
    outcome = run_training(cfg, spec, resume=bool(cfg.resume))
    world = distributed_summary(cfg, outcome.spec, outcome.command)
    result = outcome.result
    if result is None:  # a node other than 0: rank 0 on node 0 wrote the checkpoints
        click.echo(f"node {outcome.spec.node_rank} of {outcome.spec.nodes}: training done; "
                   f"node 0 wrote the checkpoints (logs: {outcome.log_dir})", err=True)
        if as_json:
            echo_json({"node_rank": outcome.spec.node_rank, "log_dir": str(outcome.log_dir),
                       **world})
        return
    row = {"run_dir": str(result.run_dir),
           "best_ckpt": str(result.best_ckpt) if result.best_ckpt else None,
           "last_ckpt": str(result.last_ckpt) if result.last_ckpt else None,
           "seconds": result.seconds, **result.metrics,
           **{k: world[k] for k in ("world_size", "per_rank_batch", "global_batch")}}
    if outcome.command:
        row["launcher_command"] = world["launcher_command"]
        row["log_dir"] = str(outcome.log_dir)
    if as_json:
        echo_json(row)
        return
    columns = [("epoch", "epochs"), ("world_size", "ranks"), ("global_batch", "global batch"),
               ("loss", "loss"), ("val_top1", "val top-1"),
               ("val_top5", "val top-5"), ("seconds", "seconds"), ("best_ckpt", "best checkpoint")]
    echo_table([row], [c for c in columns if c[0] in row])


# Quantization-aware fine-tuning: a few epochs at a low LR from the trained weights; the
# recipe's own LR and length are for training from scratch (docs/qat.md has the measurements).
QAT_DEFAULTS = {"epoch_size": 3, "lr": 0.0002, "warmup_epochs": 0, "scheduler": "cosine_decay",
                "min_lr": 0.0}
# options that steer one run, never taken from the fp32 checkpoint's recipe
_RUN_KEYS = {"ckpt_path", "ckpt_save_dir", "resume", "resume_opt", "pretrained", "distribute",
             "qat", "time_budget_minutes", "progress", "val_while_train", "epoch_size",
             "max_steps_per_epoch", "num_samples"}
# what the fine-tuned network must share with the checkpoint it starts from
_FROM_CHECKPOINT = {"model": "model", "image_resize": "image_size", "in_channels": "in_channels",
                    "num_classes": "num_classes", "mean": "mean", "std": "std",
                    "crop_pct": "crop_pct", "interpolation": "interpolation"}


def prepare_qat(cfg, explicit: set) -> None:
    """Settle a ``--qat`` config and write the run's start checkpoint (the int8 export's graph
    with its post-training ranges) unless resuming. ``explicit``: options given on the CLI."""
    from pathlib import Path

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
    start = start_checkpoint(cfg)
    if cfg.get("resume"):
        if not start.exists():
            raise ConfigError(f"nothing to resume: {start} does not exist (run --qat once "
                              "without --resume first)")
        return
    Path(cfg["ckpt_save_dir"]).mkdir(parents=True, exist_ok=True)
    write_qat_start(cfg["ckpt_path"], start, progress=bool(cfg.get("progress", True)),
                    train_data={k: cfg[k] for k in ("dataset", "data_dir", "train_split")})
