"""``shufflenet train -c RECIPE [options]``: MindCV's option names, both spellings.

The options are generated from :data:`shufflenet.config.OPTIONS`, so the
CLI, the YAML loader and the Python API accept exactly the same keys.
"""
from __future__ import annotations

import click

from shufflenet.config import OPTIONS, make_config
from shufflenet.train.launch import distributed_summary, run_training
from toolchain.qat import fine_tune_int8

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
        _train_qat(cfg, recipe, overrides, as_json)
        return
    if "qat_loss" in overrides:
        raise click.ClickException("--qat_loss chooses what a --qat run learns toward: add --qat "
                                   "--ckpt_path FP32.ckpt, or drop --qat_loss")
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
    row = _result_row(result, **{k: world[k] for k in ("world_size", "per_rank_batch",
                                                       "global_batch")})
    if outcome.command:
        row["launcher_command"] = world["launcher_command"]
        row["log_dir"] = str(outcome.log_dir)
    _echo_result(row, as_json)


def _train_qat(cfg, recipe, overrides, as_json):
    """``train --qat``: :func:`toolchain.qat.fine_tune_int8`, its result as a table or JSON."""
    given = {k: v for k, v in overrides.items() if k not in ("qat", "ckpt_path", "ckpt_save_dir")}
    run = fine_tune_int8(cfg.get("ckpt_path") or "", cfg.ckpt_save_dir, given, recipe=recipe)
    if run.checkpoint:
        click.echo(f"next: shufflenet export {run.checkpoint} -f onnx-int8   "
                   f"({'best on the val split' if run.result.best_ckpt else 'last epoch'})",
                   err=True)
    _echo_result(_result_row(run.result, validated=run.validated, notes=run.notes), as_json)


def _result_row(result, **extra) -> dict:
    """A training result as one row: where it wrote, how long, its final metrics."""
    return {"run_dir": str(result.run_dir),
            "best_ckpt": str(result.best_ckpt) if result.best_ckpt else None,
            "last_ckpt": str(result.last_ckpt) if result.last_ckpt else None,
            "seconds": result.seconds, **result.metrics, **extra}


# a column shows when its key is in the row (ranks only for a data-parallel run's row)
_COLUMNS = [("epoch", "epochs"), ("world_size", "ranks"), ("global_batch", "global batch"),
            ("loss", "loss"), ("val_top1", "val top-1"), ("val_top5", "val top-5"),
            ("seconds", "seconds"), ("best_ckpt", "best checkpoint")]


def _echo_result(row: dict, as_json: bool) -> None:
    if as_json:
        echo_json(row)
    else:
        echo_table([row], [c for c in _COLUMNS if c[0] in row])
