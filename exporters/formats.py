"""The one table of export formats.

It drives option checking (:func:`parse_formats`, :func:`check_options`), the
``shufflenet export --help`` text (:func:`formats_help`), the README table
(:func:`formats_markdown`) and the missing-engine message
(:func:`require_modules`).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from runtimes._lazy import install_hint as _pip_line
from shufflenet.errors import ConfigError, ExportError


@dataclass(frozen=True)
class FormatSpec:
    """One export format.

    ``suffix`` is appended to the model name to form the artifact file name;
    ``modules`` are the Python modules the export needs, brought by the pip
    ``extra`` (``None`` = core dependency); ``options`` are the
    :func:`exporters.export_checkpoint` options the format uses.
    """

    name: str
    suffix: str
    precision: str
    layout: str
    options: tuple
    modules: tuple
    extra: str | None
    description: str
    # relative tolerance of the smoke check: max|out - ref| / max|ref| (an all-zero
    # output scores 1.0). int8: a correct export of the tests' untrained x0_5 at 64 px
    # measured 0.03-0.08 (seeds 0-2, 2 photos) and cosine >= 0.998, so 0.25 keeps a
    # 3x margin and still stops a broken one; accuracy is the parity check's job.
    tolerance: float


_COMMON = ("batch", "image_size")

FORMATS: dict[str, FormatSpec] = {f.name: f for f in (
    FormatSpec("mindir", ".mindir", "fp32", "NCHW", _COMMON, ("mindspore",), None,
               "MindSpore MindIR (mindspore.export), runs with mindspore.nn.GraphCell", 1e-4),
    FormatSpec("onnx-raw", ".raw.onnx", "fp32", "NCHW", _COMMON, ("onnx", "onnxruntime"), None,
               "MindSpore's own mindspore.onnx.export, as-is: opset 11, batch baked in "
               "(names normalised for reproducibility)", 1e-4),
    FormatSpec("onnx", ".onnx", "fp32", "NCHW", _COMMON, ("onnx", "onnxruntime"), None,
               "optimised fp32 ONNX, opset 13, dynamic batch: BatchNorm folded, channel "
               "shuffle reduced to strided slices, constants folded", 1e-4),
    FormatSpec("onnx-fp16", ".fp16.onnx", "fp16", "NCHW", _COMMON, ("onnx", "onnxruntime"), None,
               "the optimised graph with fp16 weights and activations, fp32 input/output", 2e-2),
    FormatSpec("onnx-int8", ".int8.onnx", "int8", "NCHW",
               _COMMON + ("calib_dir", "dataset", "calib_samples", "max_accuracy_drop_pp",
                          "search_seconds"), ("onnx", "onnxruntime"), None,
               "static QDQ int8 (uint8 activations, int8 weights, onnxruntime.quantization), "
               "channel split as Gather: calibrated on the checkpoint's training split "
               "(or --calib DIR / --dataset), accuracy-aware: calibration method and "
               "fp32 layers searched until the held-out drop is within --max-accuracy-drop", 0.25),
    FormatSpec("openvino", ".openvino.xml", "fp32", "NCHW", _COMMON, ("openvino",), "openvino",
               "OpenVINO IR (.xml + .bin) converted from the optimised ONNX", 1e-3),
    FormatSpec("mnn", ".mnn", "fp32", "NCHW", _COMMON, ("MNN",), "mnn",
               "MNN model converted from the optimised ONNX via MNN's Python converter", 1e-3),
    FormatSpec("ncnn", ".ncnn.param", "fp32", "NCHW", ("image_size",), ("ncnn", "pnnx"), "ncnn",
               "ncnn .param + .bin via pnnx's native binary: BatchNorm folded, MaxPool pads "
               "made explicit, shuffle left to ncnn's own layers; batch 1", 1e-3),
    FormatSpec("tflite", ".tflite", "fp32", "NHWC", ("image_size",),
               ("onnx2tf", "tensorflow", "tf_keras", "onnx_graphsurgeon", "sng4onnx",
                "ai_edge_litert"), "tflite",
               "LiteRT flatbuffer via onnx2tf + TensorFlow (~2.6 GB), offline; NHWC input, "
               "batch 1", 1e-3),
)}

# Formats that are derived from the optimised ONNX graph.
ONNX_DERIVED = ("onnx", "onnx-fp16", "onnx-int8", "openvino", "mnn", "ncnn", "tflite")

# Where Python looks modules up; tests swap this for a lookup that fails, to
# exercise the missing-extra message without touching the engines themselves.
module_finder = importlib.util.find_spec


def parse_formats(value) -> list[str]:
    """``"onnx,onnx-int8"`` or ``["onnx", ...]`` -> validated, de-duplicated names."""
    if isinstance(value, str):
        value = [value]
    names: list[str] = []
    for item in value or ():
        for name in str(item).split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in FORMATS:
                raise ConfigError(f"unknown export format {name!r}; choose from "
                                  f"{', '.join(FORMATS)}")
            if name not in names:
                names.append(name)
    if not names:
        raise ConfigError(f"no export format given; choose from {', '.join(FORMATS)}")
    return names


def install_hint(spec: FormatSpec) -> str:
    return _pip_line(spec.extra)   # the one pip line (runtimes names it for engines too)


def require_modules(spec: FormatSpec) -> None:
    """Raise :class:`ExportError` naming the pip extra when an engine is missing."""
    missing = []
    for mod in spec.modules:
        try:
            found = module_finder(mod) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(mod)
    if missing:
        raise ExportError(f"format {spec.name!r} needs {', '.join(missing)}, which "
                          f"{'is' if len(missing) == 1 else 'are'} not installed: "
                          f"{install_hint(spec)}")


def unused_options(names: list[str], given: dict) -> list[str]:
    """Messages for options no requested format uses (e.g. ``--calib`` without onnx-int8).

    The CLI turns them into an error; the Python API logs them (a pipeline may
    pass calibration settings whatever formats it asks for).
    """
    out = []
    for opt, value in given.items():
        if value is None:
            continue
        if not any(opt in FORMATS[n].options for n in names):
            takers = [n for n, f in FORMATS.items() if opt in f.options]
            out.append(f"option {opt} is only used by format(s) {', '.join(takers)}, "
                       f"none of which was requested ({', '.join(names)})")
    return out


def check_options(names: list[str], given: dict) -> None:
    """Raise :class:`ConfigError` for the first of :func:`unused_options`."""
    problems = unused_options(names, given)
    if problems:
        raise ConfigError(problems[0])


def formats_help() -> str:
    """One line per format, for ``--help`` (inside a click ``\\b`` block)."""
    return "\n".join(f"  {f.name:<10} {f.precision:<5} "
                     f"{('[' + f.extra + ' extra] ') if f.extra else ''}{f.description.split(':')[0]}"
                     for f in FORMATS.values())


def formats_markdown() -> str:
    """The README table of formats."""
    rows = ["| format | file | precision | input | options | needs | description |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in FORMATS.values():
        needs = f"`{install_hint(f)}`" if f.extra else "core"
        opts = ", ".join(f"`{o}`" for o in f.options)
        rows.append(f"| `{f.name}` | `MODEL{f.suffix}` | {f.precision} | {f.layout} | {opts} | "
                    f"{needs} | {f.description} |")
    return "\n".join(rows)
