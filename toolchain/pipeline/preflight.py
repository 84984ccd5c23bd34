"""Pre-flight: every option the pipeline's later stages need, checked before training.

A bad ``--formats`` or target name used to surface after a minute (or an hour)
of training. :func:`preflight` runs before any stage, collects every problem it
finds and raises one :class:`ConfigError` listing them all.

Adding a check for a new option: write ``def _check_x(opts, cfg, state) ->
list[str]`` returning problem messages (empty when fine) and decorate it with
``@check``. ``state["notes"]`` takes one-line remarks the user should see;
``state["train_source"]`` is the opened training data (or None).
Checks must be cheap (no training, no export, no model building) and must not
need MindSpore.
"""
from __future__ import annotations

from typing import Callable

from exporters.formats import FORMATS, parse_formats, require_modules
from runtimes import available_engines, get_engine
from runtimes.targets import get_target, load_targets
from shufflenet.checkpoint import read_metadata
from shufflenet.config import OPTIONS, settle_num_classes
from shufflenet.data.folder import label_position_problem
from shufflenet.data.pipeline import open_source
from shufflenet.errors import ConfigError, ShuffleNetError
from shufflenet.train.distributed import under_launcher

from .parity_stage import checkpoint_data_problem, train_data_spec
from .run_options import QAT_MODES, STAGES, installed_formats, launch_spec
from .stage_cache import log

CHECKS: list[Callable] = []


def check(fn: Callable) -> Callable:
    """Register a pre-flight check (runs in registration order)."""
    CHECKS.append(fn)
    return fn


def preflight(opts, cfg) -> dict:
    """Check ``opts`` (PipelineOptions) and the train config ``cfg`` before any stage runs.

    May settle ``cfg["num_classes"]`` from the data
    (:func:`shufflenet.config.settle_num_classes`). Returns the state the checks
    built (``notes``, ``train_source``); raises :class:`ConfigError` naming
    every problem found.
    """
    problems: list[str] = []
    state: dict = {"notes": [], "train_source": None}
    notes = state["notes"]
    for fn in CHECKS:
        try:
            problems += fn(opts, cfg, state)
        except ShuffleNetError as exc:
            problems.append(str(exc))
    problems = list(dict.fromkeys(problems))  # two checks reading one bad file say it once
    if problems:
        head = "pipeline options rejected before training" if len(problems) > 1 else ""
        msg = "; ".join(problems)
        raise ConfigError(f"{head}: {msg}" if head else msg)
    for note in notes:
        log(f"[preflight] {note}")
    return state


# -- the checks ---------------------------------------------------------------
@check
def _check_force(opts, cfg, state) -> list[str]:
    unknown = set(opts.force) - set(STAGES) - {"all"}
    if unknown:
        return [f"--force takes stage names ({', '.join(STAGES)} or all), "
                f"not {', '.join(sorted(unknown))}"]
    return []


@check
def _check_thresholds(opts, cfg, state) -> list[str]:
    out = []
    if opts.min_top1_pct is not None and not 0.0 <= float(opts.min_top1_pct) <= 100.0:
        out.append(f"--min-top1 is a percentage in [0, 100], got {opts.min_top1_pct}")
    if opts.bench_seconds is None or float(opts.bench_seconds) <= 0:
        out.append(f"--bench-seconds must be positive, got {opts.bench_seconds}")
    if opts.parity_samples is not None and int(opts.parity_samples) < 1:
        out.append(f"--samples must be at least 1, got {opts.parity_samples}")
    return out


@check
def _check_qat(opts, cfg, state) -> list[str]:
    """``--qat``: a known mode; ``always`` needs onnx-int8 among the formats; QAT's own options
    are option names."""
    mode = getattr(opts, "qat", "off")
    if mode not in QAT_MODES:
        return [f"--qat is one of {', '.join(QAT_MODES)}, not {mode!r}"]
    out = []
    minutes = getattr(opts, "qat_minutes", None)
    if minutes is not None and float(minutes) <= 0:
        out.append(f"--qat-minutes must be positive, got {minutes}")
    unknown = sorted(set(getattr(opts, "qat_overrides", None) or {}) - set(OPTIONS))
    if unknown:
        out.append(f"--qat-set takes MindCV option names, not {', '.join(unknown)}")
    if mode == "always":
        try:
            formats = chosen_formats(opts)
        except ShuffleNetError:
            return out          # a bad --formats is _check_formats' to name
        if "onnx-int8" not in formats:
            out.append("--qat always fine-tunes for onnx-int8: add onnx-int8 to --formats "
                       "(or drop --qat always)")
    return out


@check
def _check_int8_evidence(opts, cfg, state) -> list[str]:
    """onnx-int8 budget options; where calibration and parity data will come from."""
    out = []
    drop = getattr(opts, "max_accuracy_drop_pp", 1.0)
    if drop is None or not 0 <= float(drop) < 100:
        out.append(f"--max-accuracy-drop is in percentage points, 0 to 100, got {drop}")
    secs = getattr(opts, "int8_search_seconds", 300.0)
    if secs is None or float(secs) <= 0:
        out.append(f"--search-seconds must be positive, got {secs}")
    calib = getattr(opts, "calib_samples", 256)
    if calib is None or int(calib) < 1:
        out.append(f"--calib-samples must be at least 1, got {calib}")
    if out or not opts.ckpt_path:
        return out     # training data is opened (and its problems named) by _check_data_classes
    try:
        formats = chosen_formats(opts)
    except ShuffleNetError:
        return out

    spec = train_data_spec(opts, cfg)
    if "onnx-int8" in formats and spec is None:
        recipe = read_metadata(opts.ckpt_path).get("recipe") or {}
        if not recipe.get("dataset"):
            state["notes"].append("the checkpoint names no training data and no --dataset was "
                                  "given: onnx-int8 will be calibrated on stand-in photos "
                                  "(accuracy unverified)")
    elif spec is not None:
        src = open_source(cfg, cfg.train_split)   # a clear DataError (listed) when unreachable
        # calibration reads the split by folder position; another tree's names would give its
        # held-out images (the int8 budget's evidence) wrong labels
        problem = ("onnx-int8" in formats and
                   label_position_problem(src.classes, read_metadata(opts.ckpt_path).get("labels")))
        if problem:
            out.append(f"training split {cfg.train_split!r} of {cfg.data_dir} (onnx-int8 calibrates "
                       f"on it): its {problem}; use the data the checkpoint was trained on")
    return out


@check
def _check_checkpoint(opts, cfg, state) -> list[str]:
    if not opts.ckpt_path:
        return []

    read_metadata(opts.ckpt_path)  # raises a clear CheckpointError when missing/corrupt
    return []


@check
def _check_data_dir_is_used(opts, cfg, state) -> list[str]:
    """--data_dir with the demo dataset would be ignored: every stage would judge demo digits."""
    if "data_dir" in opts.overrides and str(cfg.dataset).lower() == "demo":
        return [f"--data_dir {opts.overrides['data_dir']} is ignored by the demo dataset (the "
                f"recipe's): add --dataset imagenet (a class-per-folder tree) or --dataset cifar10"]
    return []


@check
def _check_val_data(opts, cfg, state) -> list[str]:
    """The val split validate and parity judge on exists before minutes of training."""
    if opts.ckpt_path or "data_dir" in opts.overrides and str(cfg.dataset).lower() == "demo":
        return []      # _check_checkpoint_data / _check_data_dir_is_used

    try:
        open_source(cfg, cfg.val_split)
    except (ShuffleNetError, OSError, TypeError, KeyError) as exc:
        return [f"val split {cfg.val_split!r} (validate and parity judge on it): {exc}"]
    return []


@check
def _check_checkpoint_data(opts, cfg, state) -> list[str]:
    """--ckpt_path, no --dataset: validate and parity need the data the checkpoint names."""
    if not opts.ckpt_path:
        return []

    try:
        read_metadata(opts.ckpt_path)
    except ShuffleNetError:
        return []      # _check_checkpoint names it
    problem = checkpoint_data_problem(opts, cfg, opts.ckpt_path)
    return [problem] if problem else []


def chosen_formats(opts) -> list[str]:
    """The export formats the run will produce (``--formats`` or every installed one)."""
    if opts.formats:
        return parse_formats(list(opts.formats))
    return installed_formats()


@check
def _check_formats(opts, cfg, state) -> list[str]:
    out = []
    for name in chosen_formats(opts):
        try:
            require_modules(FORMATS[name])
        except ShuffleNetError as exc:
            out.append(str(exc))
    return out


@check
def _check_targets(opts, cfg, state) -> list[str]:
    """Targets file parses; named targets exist, their engine is here, --formats feeds them."""
    table = load_targets(opts.targets_file)
    if not opts.target_names:
        return []
    try:
        formats = chosen_formats(opts)
    except ShuffleNetError:
        formats = None  # a typo, reported by _check_formats: which formats feed what is unknown
    installed = set(available_engines())
    out = []
    for name in opts.target_names:
        try:
            t = get_target(name, table)
        except ShuffleNetError as exc:
            out.append(str(exc))
            continue
        if not t.is_remote and t.engine not in installed:
            spec = get_engine(t.engine)
            out.append(f"target {name!r} runs on {t.engine}, which is not installed here "
                       f"(Python module {spec.module!r})")
            continue
        if formats is None:
            continue
        if t.format:
            feeds = t.format in formats
        else:
            engine = get_engine(t.engine)
            feeds = any(f in engine.formats and FORMATS[f].precision == t.precision
                        for f in formats)
        if not feeds:
            what = f"an {t.format}" if t.format else f"a {t.precision} {t.engine}"
            out.append(f"target {name!r} needs {what} artifact; add its format to --formats")
    return out


@check
def _check_data_classes(opts, cfg, state) -> list[str]:
    """The recipe's class count against the training data's, settled before training."""
    if opts.ckpt_path:
        return []  # no training: the checkpoint's own head is used

    state["train_source"] = source = open_source(cfg, cfg.train_split)
    note = settle_num_classes(cfg, len(source.classes),
                              explicit="num_classes" in opts.overrides)
    if note:
        state["notes"].append(note)
    return []


@check
def _check_launch(opts, cfg, state) -> list[str]:
    """--devices/--nodes/--node-rank/--master: consistent, and something to train."""
    spec = launch_spec(opts)
    if spec is None:
        return []
    out = spec.problems()
    if opts.ckpt_path and spec.distributed:
        out.append("--devices/--nodes launch training, but --ckpt_path skips it: drop one")
    if spec.distributed and under_launcher():
        out.append("already running under a launcher (msrun/mpirun): drop --devices/--nodes")
    return out
