"""``shufflenet parity``: the checkpoint against every exported artifact and engine."""
from __future__ import annotations

import click

from runtimes import ENGINES, resolve_artifact
from runtimes.devices import device_for_target
from runtimes.plan import plan
from runtimes.targets import get_target, load_targets
from shufflenet.errors import ConfigError, GateFailed
from toolchain.output import echo_json, echo_table
from toolchain.parity import failure_message, run_parity
from toolchain.parity.report import TABLE_COLUMNS
from toolchain.parity.writers import write_json, write_junit, write_markdown

from ..options import json_option, model_option, num_classes_option, targets_file_option


def _engines(ctx, param, value):
    names = [n.strip().lower() for v in value for n in v.split(",") if n.strip()]
    if not names:
        return None

    unknown = [n for n in names if n not in ENGINES]
    if unknown:
        raise click.BadParameter(f"unknown engine(s) {', '.join(unknown)}; choose from "
                                 f"{', '.join(ENGINES)}")
    return names


def _engine_options(ctx, param, value):
    """``ENGINE.KEY=VALUE`` pairs -> ``{engine: {key: value}}`` (numbers parsed)."""
    import yaml

    out: dict = {}
    for item in value:
        head, sep, raw = item.partition("=")
        engine, dot, key = head.partition(".")
        if not sep or not dot or not engine or not key:
            raise click.BadParameter(f"expected ENGINE.KEY=VALUE, got {item!r}")
        out.setdefault(engine.lower(), {})[key] = yaml.safe_load(raw) if raw else raw
    return out


def _on_target(name, targets_file, engines, engine_options, threads, artifacts):
    """The target's engine, options (``--engine-option`` on top), threads and device; each
    artifact must be one the target runs (:func:`runtimes.plan.plan`, as bench decides)."""
    target = get_target(name, load_targets(targets_file))
    if engines and engines != [target.engine]:
        raise ConfigError(f"target {name!r} runs {target.engine}; drop --engine or pick another "
                          "target")
    for art in artifacts:
        _, skipped = plan([target], [art], measuring=False)
        if skipped:
            raise ConfigError(skipped[0][1])
    options = {**engine_options, target.engine: {**dict(target.options),
                                                 **engine_options.get(target.engine, {})}}
    return [target.engine], options, threads or target.threads, device_for_target(target, True)


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("artifacts", nargs=-1, required=True, type=click.Path())
@click.option("--engine", "engines", multiple=True, callback=_engines,
              help="Only these engines (repeat or comma-separate); default: every installed "
                   "engine that runs each artifact.")
@click.option("--images", type=click.Path(file_okay=False), default=None,
              help="Folder of real images (unlabelled). Default: sample photos shipped with "
                   "scikit-learn/scikit-image.")
@click.option("--dataset", default=None,
              help="'demo' (labelled digits) or a dataset folder: DIR[/split]/<class>/* "
                   "(labelled) or a flat folder (unlabelled).")
@click.option("--split", default="val", show_default=True, help="Dataset split.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="Compare at most N samples (default: all).")
@click.option("--random", "random_n", type=click.IntRange(min=1), default=None,
              help="Use N random tensors instead of images (explicit opt-in).")
@click.option("--profile", default=None,
              help="fp32 | fp16 | int8 | bf16 | FILE.yaml/.json of overrides. Default: each "
                   "artifact's precision.")
@click.option("--batch-size", "--batch_size", "batch_size", type=click.IntRange(min=1),
              default=8, show_default=True, help="Images per batch.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads per engine.")
@click.option("--engine-option", "engine_options", multiple=True, callback=_engine_options,
              metavar="ENGINE.KEY=VALUE",
              help="Runner option, e.g. openvino.inference_precision=bf16 (repeatable).")
@click.option("--no-localize", "no_localize", is_flag=True,
              help="Skip first-divergent-layer localisation of failing pairs.")
@click.option("--junit", "junit", type=click.Path(dir_okay=False), default=None,
              help="Write a JUnit XML report (one testcase per pair).")
@click.option("--report", "report_md", type=click.Path(dir_okay=False), default=None,
              help="Write a Markdown report.")
@click.option("--json-out", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the JSON report to a file.")
@click.option("--allow-inconclusive", "allow_inconclusive", is_flag=True,
              help="Let INCONCLUSIVE pairs (too few samples to prove the margin either way) "
                   "pass the gate; by default they fail it.")
@click.option("--target", "target_name", default=None, metavar="NAME",
              help="Run the artifacts on this target's device (local, ssh:// or emu:arm64) with "
                   "its engine, options and threads; the checkpoint stays here.")
@targets_file_option
@model_option
@num_classes_option
@json_option
def parity(checkpoint, artifacts, engines, images, dataset, split, samples, random_n, profile,
           batch_size, threads, engine_options, no_localize, junit, report_md, json_out,
           allow_inconclusive, target_name, targets_file, model, num_classes, as_json):
    """Check that exported ARTIFACTS compute what CHECKPOINT computes.

    The checkpoint runs in MindSpore (the reference); each artifact runs on
    each engine that can run it, on the same real images. Prints one row per
    (artifact, engine) with its verdict: PASS, FAIL, or INCONCLUSIVE (the
    sample cannot show the margin either way; it says how many samples would)
    -- and exits 1 when any pair is not PASS (INCONCLUSIVE passes with
    --allow-inconclusive). The labels, preprocessing and input size each
    artifact carries must equal the checkpoint's (a mismatch fails, naming
    the field). --model and --num-classes are needed only for a checkpoint
    without metadata.

    With --target the artifacts run on that target's device: the device
    receives the preprocessed batches and returns logits (an ssh host or the
    emulated ARM64 device of `shufflenet device setup arm64`); the table says
    where each pair ran (arch, CPU model, emulated).

    \b
    Examples:
      shufflenet parity best.ckpt out/*.onnx out/*.mindir --report parity.md
      shufflenet parity best.ckpt out/m.ncnn.param --target my-emulated-a76 --targets-file t.yaml
    """
    if images and dataset:
        raise ConfigError("give either --images or --dataset, not both")
    artifacts = [resolve_artifact(a) for a in artifacts]   # once, here, for every layer below
    device = None
    if target_name:
        engines, engine_options, threads, device = _on_target(target_name, targets_file, engines,
                                                              engine_options, threads, artifacts)
    report = run_parity(checkpoint, artifacts, engines=engines, images=images,
                        dataset=dataset, split=split, samples=samples, random=random_n,
                        profile=profile, batch_size=batch_size, threads=threads,
                        localize=not no_localize, progress=not as_json, model=model,
                        num_classes=num_classes, engine_options=engine_options,
                        allow_inconclusive=allow_inconclusive, device=device)
    if as_json:
        echo_json(report.to_dict())
    else:
        echo_table(report.rows(), TABLE_COLUMNS)
        for pair in (p for p in report.pairs if p.status != "PASS"):
            click.echo(f"{pair.status} {pair.name}: {pair.summary()}")
            d = pair.divergence
            if d is not None and not d.available:
                click.echo(f"  first divergent layer: not available ({d.reason})")
        click.echo(f"inputs: {report.inputs['source']}, {report.inputs['samples']} samples, "
                   f"fingerprint {report.inputs['sha256'][:12]}")
        for note in report.notes:      # e.g. int8 calibrated on stand-in photos: accuracy unverified
            click.echo(f"note: {note}")
    for path, writer in ((junit, write_junit), (report_md, write_markdown), (json_out, write_json)):
        if path:
            writer(report, path)
            click.echo(f"wrote {path}", err=True)
    if not report.passed:
        raise GateFailed(failure_message(report))
