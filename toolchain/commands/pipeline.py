"""``shufflenet pipeline``: train -> validate -> export -> [qat] -> parity -> latency, one command."""
from __future__ import annotations

from pathlib import Path

import click

from shufflenet.errors import ConfigError
from toolchain.attest import attest_run
from toolchain.attest.sign import check_key_file
from toolchain.pipeline import PipelineOptions, RunRecord, diff_records, run_pipeline
from toolchain.pipeline.record import counted_gates, not_judged_note
from toolchain.pipeline.run_diff import diff_rows, render_diff
from toolchain.pipeline.run_options import QAT_MODES

from ..options import json_option, launch_options, pipeline_targets_file_option
from ..output import echo_json, echo_table


def _csv(ctx, param, value):
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise click.BadParameter("give at least one name")
    return items


def _override(ctx, param, values):
    out = {}
    for item in values or ():
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: use KEY=VALUE with a MindCV option name")
        k, v = item.split("=", 1)
        out[k.strip().lstrip("-").replace("-", "_")] = v.strip()
    return out


@click.command(context_settings={"show_default": True})
@click.option("-c", "--config", "recipe", default="demo",
              help="Training recipe: a shipped name (see `shufflenet train --help`) or a YAML path.")
@click.option("--dataset", default=None, help="demo, imagenet (any class-per-folder tree) or cifar10.")
@click.option("--data_dir", "--data-dir", "data_dir", default=None, help="Dataset root.")
@click.option("--epoch_size", "--epoch-size", "epoch_size", type=click.IntRange(1), default=None,
              help="Override the recipe's number of epochs.")
@click.option("--set", "sets", multiple=True, callback=_override, metavar="KEY=VALUE",
              help="Override any recipe option (MindCV names), repeatable.")
@click.option("--ckpt_path", "--ckpt-path", "ckpt_path", default=None,
              type=click.Path(dir_okay=False), help="Skip training; use this checkpoint.")
@click.option("--formats", callback=_csv, default=None,
              help="Comma-separated export formats (default: every installed one).")
@click.option("-t", "--target", "target_names", multiple=True, metavar="NAME",
              help="Measure on this target (repeatable; default: the default local targets).")
@click.option("--targets", "target_list", callback=_csv, default=None, hidden=True,
              help="Old spelling: comma-separated target names (use --target NAME).")
@pipeline_targets_file_option
@click.option("-o", "--run-dir", "--run_dir", "run_dir", default="runs/pipeline",
              type=click.Path(file_okay=False), help="Run directory (re-runs reuse cached stages).")
@click.option("--force", multiple=True, metavar="STAGE",
              help="Redo a stage even if cached (train, validate, export, qat, parity, bench, "
                   "all).")
@click.option("--samples", type=click.IntRange(1), default=None,
              help="Cap on the labelled val images the parity check uses (default: all of them; "
                   "a 1 pp margin needs ~300+, see the README).")
@click.option("--allow-inconclusive", "allow_inconclusive", is_flag=True,
              help="Parity pairs whose sample cannot show the margin either way pass their gate "
                   "(by default INCONCLUSIVE fails it).")
@click.option("--max-accuracy-drop", "--max_accuracy_drop", "max_accuracy_drop_pp",
              type=click.FloatRange(0, 100, max_open=True), default=1.0, metavar="PP",
              help="onnx-int8: top-1 percentage points it may lose on held-out training images; "
                   "layers are kept in fp32 until it holds.")
@click.option("--search-seconds", "--search_seconds", "search_seconds",
              type=click.FloatRange(0, min_open=True), default=300.0,
              help="onnx-int8: time budget of the accuracy-aware search.")
@click.option("--calib-samples", "--calib_samples", "calib_samples", type=click.IntRange(1),
              default=256, help="onnx-int8: calibration images from the training split.")
@click.option("--qat", "qat", type=click.Choice(QAT_MODES), default="auto",
              help="Quantization-aware fine-tuning for onnx-int8 (docs/qat.md): 'auto' fine-tunes "
                   "the trained checkpoint only when post-training int8 misses "
                   "--max-accuracy-drop, 'always' every run, 'off' never. The QAT artifact then "
                   "replaces the post-training one in parity and latency. Default auto: QAT is "
                   "a training run (~3x an fp32 step on CPU) with nothing to gain where "
                   "post-training int8 passed; where it missed, the run fails that gate anyway.")
@click.option("--qat-minutes", "--qat_minutes", "qat_minutes", type=click.FloatRange(0, min_open=True),
              default=None, help="QAT time budget: stops after the first epoch past it "
                                 "(default: QAT's 3 epochs).")
@click.option("--qat-set", "qat_sets", multiple=True, callback=_override, metavar="KEY=VALUE",
              help="Override a QAT option (MindCV names: epoch_size, lr, batch_size, ...), "
                   "repeatable; the rest comes from the checkpoint's recipe.")
@click.option("--min-top1", "--min_top1", "min_top1", type=float, default=None,
              help="Gate: fail when val top-1 (%) is below this.")
@click.option("--bench-seconds", type=click.FloatRange(0.1), default=2.0,
              help="Time budget per target for latency measurement.")
@click.option("--diff", "diff_with", default=None, type=click.Path(file_okay=False, exists=True),
              help="Do not run: print what changed from run DIR (A) to this one (-o, B), by stage, "
                   "artifact+engine and target, with deltas (timings and raw samples left out).")
@click.option("--attest-key", "attest_key", default=None, type=click.Path(dir_okay=False),
              metavar="KEY.pem", help="Sign the run's verdicts and artifacts (`shufflenet attest`).")
@launch_options
@json_option
def pipeline(recipe, dataset, data_dir, epoch_size, sets, ckpt_path, formats, target_names,
             target_list, targets_file, run_dir, force, samples, allow_inconclusive,
             max_accuracy_drop_pp, search_seconds, calib_samples, qat, qat_minutes, qat_sets,
             min_top1, bench_seconds, diff_with, as_json, devices, nodes, node_rank, master,
             attest_key):
    """Train, validate, export, check parity and validate latency, in one command.

    With no options it runs the whole thing on the built-in demo data (x0_5,
    every installed format and engine, the default targets) and prints where
    the report is. Exits non-zero when any gate fails, naming it.
    """
    if diff_with:
        _print_diff(run_dir, diff_with, as_json)
        return
    overrides = dict(sets)
    if dataset:
        overrides["dataset"] = dataset
    if data_dir:
        overrides["data_dir"] = data_dir
    if epoch_size:
        overrides["epoch_size"] = epoch_size
    # `--targets` is a file in bench/targets; here it survives only as a hidden alias
    names = list(target_names) + [n for n in target_list or () if n not in target_names]
    opts = PipelineOptions(recipe=recipe, overrides=overrides, ckpt_path=ckpt_path, formats=formats,
                           target_names=names or None, targets_file=targets_file, run_dir=run_dir,
                           force=tuple(force), parity_samples=samples, min_top1_pct=min_top1,
                           allow_inconclusive=allow_inconclusive,
                           max_accuracy_drop_pp=max_accuracy_drop_pp,
                           int8_search_seconds=search_seconds, calib_samples=calib_samples,
                           qat=qat, qat_minutes=qat_minutes, qat_overrides=dict(qat_sets),
                           bench_seconds=bench_seconds, command=_command_line(click.get_current_context()),
                           devices=devices, nodes=nodes, node_rank=node_rank, master=master)
    if attest_key:
        check_key_file(attest_key)      # a bad key fails now, not after the run
    record = run_pipeline(opts)
    if record is not None and attest_key:
        signed = attest_run(run_dir, attest_key)
        click.echo(f"attestation: {signed['statement']}", err=True)
    if record is None:  # a node other than 0: it trained; node 0 runs the rest
        if as_json:
            echo_json({"node_rank": node_rank, "nodes": nodes, "trained": True})
        return
    if as_json:
        echo_json(record.to_dict())
    else:
        rows = []
        for name, st in record.stages.items():
            superseded = sum(bool(g.get("superseded")) for g in st.gates or [])
            gates = counted_gates(st.gates or [])
            bad = [g["name"] for g in gates if g.get("passed") is False]
            unjudged = sum(g.get("passed") is None for g in gates)
            # an INCONCLUSIVE gate is never counted as a pass, even when allowed
            allowed = sum(g.get("passed") is True and g.get("verdict") == "INCONCLUSIVE" for g in gates)
            ok = sum(g.get("passed") is True for g in gates) - allowed
            rows.append({"stage": name, "status": st.status, "seconds": st.seconds,
                         "gates": (f"{ok}/{len(gates)} pass" + (f", {unjudged} not judged" if unjudged
                                                                  else "")
                                   + (f", {allowed} INCONCLUSIVE (allowed)" if allowed else "")
                                   + (f", {superseded} superseded by qat" if superseded else ""))
                         if gates else (f"{superseded} superseded by qat" if superseded else "-"),
                         "failed": "; ".join(bad) or "-"})
        echo_table(rows, [("stage", "stage"), ("status", "status"), ("seconds", "seconds"),
                          ("gates", "gates"), ("failed", "failed gates")])
        click.echo(f"\nverdict: {verdict_line(record)}")
        click.echo(f"report: {Path(run_dir) / 'report.html'}  (also report.md, run.json)")
    if not record.passed:
        raise click.ClickException("pipeline gates failed: " + "; ".join(failure_lines(record)))


def _chance_gate(record) -> dict | None:
    st = record.stages.get("validate")
    return next((g for g in (st.gates if st else []) if "test" in g and "chance_pct" in g), None)


def failure_lines(record) -> list[str]:
    """The failed gates by name; the chance gate with its finding and what to try."""
    chance = _chance_gate(record)
    return [f"{name}: {chance['detail']}" if chance and name == chance["name"] else name
            for name in record.failed_gates]


def verdict_line(record) -> str:
    """The CLI's final verdict, qualified like report.md's headline: INCONCLUSIVE let through by
    --allow-inconclusive says so, and a PASS with unjudged gates says how many
    (``PASS (3 gates NOT JUDGED)``); ``record.passed`` alone decides the exit code."""
    gates = [g for st in record.stages.values() for g in (st.gates or [])]
    qualifiers = (["allowed by --allow-inconclusive"]
                  if record.verdict == "INCONCLUSIVE" and record.passed else [])
    chance = _chance_gate(record)
    if chance and chance.get("passed") is False:
        qualifiers.append("model not shown better than chance: " + chance["detail"].split(":")[0])
    if not_judged_note(gates):
        qualifiers.append(not_judged_note(gates))
    return record.verdict + (f" ({'; '.join(qualifiers)})" if qualifiers else "")


def _command_line(ctx) -> list[str]:
    """The exact command, rebuilt from the parsed options (works under any launcher)."""
    args = ["shufflenet", "pipeline"]
    for p in ctx.command.params:
        if not isinstance(p, click.Option) or p.name == "attest_key":   # not a run input
            continue
        v = ctx.params.get(p.name)
        if v is None or v is False or v == () or v == {} or v == p.default:
            continue
        flag = max(p.opts, key=len)
        if v is True:
            args.append(flag)
        elif isinstance(v, dict):
            for k, val in v.items():
                args += [flag, f"{k}={val}"]
        elif isinstance(v, (list, tuple)) and p.multiple:
            for item in v:
                args += [flag, str(item)]
        elif isinstance(v, (list, tuple)):
            args += [flag, ",".join(map(str, v))]
        else:
            args += [flag, str(v)]
    return args


def _print_diff(run_dir, other, as_json):
    """Text: grouped by stage and item, read from ``--diff`` (A, the baseline) to ``-o`` (B),
    deltas B - A. ``--json``: every difference as ``{"key", "a": -o's value, "b": --diff's}``."""
    recs = {}
    for d in (run_dir, other):
        rec = RunRecord.load(d)
        if rec is None:
            raise ConfigError(f"no run record (run.json, schema 1) in {d}")
        recs[d] = rec.to_dict()
    if as_json:
        echo_json([{"key": k, "a": a, "b": b} for k, a, b in diff_records(recs[run_dir],
                                                                         recs[other])])
    else:
        click.echo(render_diff(diff_rows(recs[other], recs[run_dir]), str(other), str(run_dir)))
