"""``shufflenet export``: checkpoint -> MindIR / ONNX / fp16 / int8 / edge formats."""
from __future__ import annotations

import click

from exporters.formats import FORMATS, formats_help

from ..options import json_option, model_option, num_classes_option
from ..output import echo_json, echo_table


class FormatList(click.ParamType):
    """Comma-separated format names, checked against the formats table."""

    name = "FMT[,FMT...]"

    def convert(self, value, param, ctx):
        from shufflenet.errors import ConfigError

        from exporters.formats import parse_formats

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
              help="onnx-int8: folder of calibration images.")
@click.option("--dataset", default=None,
              help="onnx-int8: calibration set instead of --calib: demo, demo:val or photos "
                   "(default photos).")
@click.option("--calib-samples", "--calib_samples", "calib_samples", type=click.IntRange(1),
              default=64, show_default=True, help="onnx-int8: number of calibration images.")
@json_option
def export(checkpoint, model, num_classes, formats, out_dir, batch, image_size, calib_dir,
           dataset, calib_samples, as_json):
    from exporters import export_checkpoint
    from exporters.formats import check_options

    check_options(formats, {"calib_dir": calib_dir, "dataset": dataset,
                            "calib_samples": None if calib_samples == 64 else calib_samples})
    results = export_checkpoint(checkpoint, formats, out_dir, model=model, num_classes=num_classes,
                                batch=batch, calib_dir=calib_dir, dataset=dataset,
                                calib_samples=calib_samples, image_size=image_size)
    rows = [r.to_dict() for r in results]
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        r["sha"] = r["sha256"][:12]
    echo_table(rows, [("format", "format"), ("precision", "precision"), ("path", "artifact"),
                      ("seconds", "seconds"), ("smoke_error", "smoke rel. error"),
                      ("tolerance", "tolerance"), ("sha", "sha256")])
