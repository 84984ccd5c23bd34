"""``shufflenet export``: checkpoint -> MindIR / ONNX / fp16 / int8 / edge formats."""
from __future__ import annotations

from pathlib import Path

import click

from exporters import export_checkpoint
from exporters.formats import FORMATS, check_options, formats_help, parse_formats
from exporters.int8_metrics import fp32_layers_text
from exporters.metadata import read_artifact_metadata
from shufflenet.checkpoint import read_metadata
from shufflenet.data.folder import class_folder_labels
from shufflenet.errors import ConfigError, DataError, ExportError

from ..options import json_option, model_option, num_classes_option
from ..output import echo_json, echo_table


class FormatList(click.ParamType):
    """Comma-separated format names, checked against the formats table."""

    name = "FMT[,FMT...]"

    def convert(self, value, param, ctx):
        try:
            return parse_formats(value)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class BatchType(click.ParamType):
    name = "N|dynamic"

    def convert(self, value, param, ctx):
        if isinstance(value, int) or str(value).lower() == "dynamic":
            return value if isinstance(value, int) else "dynamic"
        try:
            n = int(value)
        except ValueError:
            self.fail(f"{value!r} is neither a positive integer nor 'dynamic'", param, ctx)
        if n < 1:
            self.fail(f"batch must be >= 1, got {n}", param, ctx)
        return n


@click.command(help=f"""Export checkpoint CKPT to one or more formats in OUT_DIR.

Every artifact is reloaded and run once on real photos and compared with the
checkpoint's MindSpore output before it lands in OUT_DIR, and carries the
model name, labels, preprocessing and provenance (ONNX metadata_props, or a
.meta.json sidecar).

A QAT checkpoint (shufflenet train --qat) exports to onnx-int8 with its learned
scales and zero points, not re-calibrated: the artifact computes what its
fake-quant network computed (docs/qat.md).

\b
Formats:
{formats_help()}
""")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@model_option
@num_classes_option
@click.option("--format", "-f", "formats", type=FormatList(), required=True,
              help=f"Comma-separated: {', '.join(FORMATS)}.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Output folder (created if needed).")
@click.option("--batch", type=BatchType(), default="dynamic", show_default=True,
              help="Input batch size baked into the artifacts, or 'dynamic'.")
@click.option("--image-size", "--image_size", "image_size", type=click.IntRange(32, 4096),
              default=None, help="Input side in pixels (default: the checkpoint's).")
@click.option("--calib", "calib_dir", type=click.Path(file_okay=False), default=None,
              help="onnx-int8: folder of calibration images (class subfolders: labelled, "
                   "a held-out part measures the accuracy drop).")
@click.option("--dataset", default=None,
              help="onnx-int8: calibration set instead of --calib: a dataset folder (its train "
                   "split), demo, or photos (stand-in photos: accuracy unverified). Default: the "
                   "training split named in the checkpoint's metadata, when reachable.")
@click.option("--calib-samples", "--calib_samples", "calib_samples", type=click.IntRange(1),
              default=256, show_default=True,
              help="onnx-int8: calibration images (a stratified, seeded sample; all if fewer).")
@click.option("--max-accuracy-drop", "--max_accuracy_drop", "max_accuracy_drop_pp",
              type=click.FloatRange(0, 100, max_open=True), default=1.0, show_default=True,
              metavar="PP",
              help="onnx-int8: top-1 accuracy it may lose, in percentage points, measured on "
                   "held-out training images (never val). Over it, other calibration methods "
                   "and then fp32 layers are tried; a missed budget still writes the best "
                   "artifact and exits 1.")
@click.option("--search-seconds", "--search_seconds", "search_seconds",
              type=click.FloatRange(0, min_open=True), default=300.0, show_default=True,
              help="onnx-int8: time budget of that search.")
@json_option
def export(checkpoint, model, num_classes, formats, out_dir, batch, image_size, calib_dir,
           dataset, calib_samples, max_accuracy_drop_pp, search_seconds, as_json):
    ctx = click.get_current_context()
    given = {"calib_dir": calib_dir, "dataset": dataset}
    for key in ("calib_samples", "max_accuracy_drop_pp", "search_seconds"):
        if ctx.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE:
            given[key] = ctx.params[key]
    check_options(formats, given)
    for hint, folder in (("--calib", calib_dir), ("--dataset", dataset and Path(dataset) / "train")):
        if folder and Path(folder).is_dir():
            problem = calib_folder_problem(folder, read_metadata(checkpoint).get("labels"))
            if problem:
                raise click.BadParameter(problem, param_hint=hint)
    results = export_checkpoint(checkpoint, formats, out_dir, model=model, num_classes=num_classes,
                                batch=batch, calib_dir=calib_dir, dataset=dataset,
                                calib_samples=calib_samples, image_size=image_size,
                                max_accuracy_drop_pp=max_accuracy_drop_pp,
                                search_seconds=search_seconds, progress=not as_json)
    rows = [r.to_dict() for r in results]
    if as_json:
        echo_json(rows)
    else:
        for r in rows:
            r["sha"] = r["sha256"][:12]
        echo_table(rows, [("format", "format"), ("precision", "precision"), ("path", "artifact"),
                          ("seconds", "seconds"), ("smoke_error", "smoke rel. error"),
                          ("tolerance", "tolerance"), ("sha", "sha256")])
        for r in results:
            if r.format == "onnx-int8":
                click.echo(_int8_line(r))
    for r in results:
        for note in r.notes:
            click.echo(f"warning: {r.format}: {note}", err=True)
    problems = [r.problem for r in results if r.problem]
    if problems:
        raise ExportError("; ".join(problems))


def _int8_line(result) -> str:
    opts = read_artifact_metadata(result.path).get("export_options", {})
    return int8_summary(result.details.get("int8") or opts.get("int8", {}),
                        opts.get("calibration", {}))


def calib_folder_problem(calib_dir, labels) -> str | None:
    """Why a class-per-folder ``--calib`` tree (or a ``--dataset`` folder's train split) would be
    read with wrong labels (None: it would not).

    Folders named after the model's labels are read by name (any subset);
    others would be labelled by sorted position, and the held-out accuracy
    that steers the int8 search judged with those labels
    (:func:`shufflenet.data.folder.label_position_problem`): a dataset root
    (train/, val/) or folders that are not labels are refused.
    """
    from pathlib import Path

    root = Path(calib_dir)
    if not root.is_dir():
        return None
    names = [d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
    try:
        class_folder_labels(names, labels)       # the rule calibration reads the tree with
        return None
    except DataError as exc:
        problem = str(exc)
    hint = (f"pass its training split ({root / 'train'})" if (root / "train").is_dir()
            else "name its class folders after the labels, or pass a flat folder of images")
    return f"{root}: its {problem}, so its images would get wrong labels; {hint}"


def int8_summary(found: dict, calib: dict) -> str:
    """What the int8 search chose, for humans: one line, plus a line per caveat."""
    drop = ("unmeasured" if found.get("drop_pp") is None else
            f"{found['metric']} {found['drop_pp']:.2f} pp on {found['heldout_samples']} held-out "
            f"(budget {found['max_drop_pp']:g} pp: {'met' if found['budget_met'] else 'MISSED'})")
    lat = found.get("latency_ms", {})
    speed = ", ".join(f"{k} {v:.3g} ms" for k, v in lat.items())
    line = (f"int8: {found.get('method')}{'' if found.get('per_channel') else ' per-tensor'}, "
            f"{fp32_layers_text(found)}, {drop}; calibrated on "
            f"{calib.get('samples')} images of {calib.get('source')} (fingerprint "
            f"{str(calib.get('fingerprint'))[:12]}); latency {speed}")
    shipped = lat.get("mixed", lat.get("int8_all"))
    if shipped is not None and lat.get("fp32") is not None and shipped >= lat["fp32"]:
        line += (f"\n  this int8 is not faster than fp32 on this machine ({shipped:.3g} vs "
                 f"{lat['fp32']:.3g} ms, 1 thread, this input size): time both on the target "
                 "device (shufflenet bench) before choosing int8")
    if found.get("drop_pp") is not None and calib.get("kind") == "train-split":
        # the network was fit on these images: their margins are wider than val's
        line += ("\n  the held-out images are training images, on which the network is more "
                 "confident than on new ones: check the artifact on val before shipping "
                 "(shufflenet parity CKPT ARTIFACT --dataset DIR --split val; the pipeline does)")
    return line
