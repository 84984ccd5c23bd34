"""``export_checkpoint``: the one wrapper every export goes through.

For each format it: checks the engine is installed, builds the artifact in a
staging folder next to the destination, reloads it and runs it once on real
photos, compares with the checkpoint's MindSpore output (smoke parity with
the format's tolerance), writes the metadata, then renames the files into
place -- a failed export never leaves a file at the destination.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shufflenet import __version__
from shufflenet.checkpoint import sha256_file
from shufflenet.data.preprocess import list_images
from shufflenet.errors import ConfigError, ExportError
from shufflenet.fileio import default_file_mode, output_dir_problem

from .builders import BUILDERS
from .calibration import check_dataset
from .formats import FORMATS, parse_formats, require_modules, unused_options
from .int8_metrics import fp32_layers_text, mostly_fp32
from .metadata import SIDECAR_SUFFIX
from .mindspore_export import export_onnx_raw
from .onnx_optimize import optimize
from .smoke import run_artifact
from .source import load_source, run_mindspore
from .vectors import VECTORS_SUFFIX, attach_vectors

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What one export produced."""
    format: str
    path: str                 # the artifact (for multi-file formats, the file to load)
    precision: str
    seconds: float            # build + smoke check
    smoke_error: float        # max|out - ref| / max|ref| on the reference photos
    tolerance: float
    sha256: str               # of ``path``, or of all its files in order when it has companions
    files: list = field(default_factory=list)   # every file written, metadata sidecar included
    # written, but short of a promise (onnx-int8: accuracy budget missed); None when fine
    problem: str | None = None
    notes: list = field(default_factory=list)   # e.g. "calibrated on stand-in photos: ..."
    details: dict = field(default_factory=dict)  # run facts kept out of the file (int8 timings)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ExportContext:
    """Shared state of one ``export_checkpoint`` call (the raw/optimised ONNX are built once)."""
    source: object
    out_dir: Path
    batch: object
    calib_dir: str | None
    dataset: str | None
    calib_samples: int
    max_accuracy_drop: float = 0.01          # onnx-int8 budget (fraction) on held-out train images
    search_seconds: float = 300.0            # onnx-int8 search time budget
    latency_seconds: float = 1.5             # onnx-int8 fp32 / int8 / mixed latency at export
    progress: bool = True
    train_data: dict | None = None           # onnx-int8: training split to calibrate on
    val_data: dict | None = None             # test vectors: {"dataset", "data_dir", "val_split"}
    _raw: object = None
    _vectors_cache: dict | None = None
    _optimized: dict = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.source.model_name

    def raw_onnx(self):
        if self._raw is None:
            stage = Path(tempfile.mkdtemp(prefix=".raw.", dir=self.out_dir))
            try:
                self._raw = export_onnx_raw(self.source, stage, self._raw_batch())
            finally:
                shutil.rmtree(stage, ignore_errors=True)
        return self._raw

    def raw_onnx_at(self, batch: int):
        """The naive export at a given batch (MindSpore bakes it into the graph)."""
        if batch == self._raw_batch():
            return self.raw_onnx()

        stage = Path(tempfile.mkdtemp(prefix=".raw.", dir=self.out_dir))
        try:
            return export_onnx_raw(self.source, stage, batch)
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def _raw_batch(self):
        return 1 if self.batch == "dynamic" else self.batch

    def optimized_onnx(self, shuffle: str = "slice"):
        """The optimised fp32 ``onnx.ModelProto`` (metadata not yet embedded);
        ``shuffle="gather"`` gives the variant the int8 graph is built from."""
        if shuffle not in self._optimized:
            self._optimized[shuffle] = optimize(self.raw_onnx(), self.batch, __version__, shuffle)
        return self._optimized[shuffle]


def _normalize_batch(batch):
    if batch is None or str(batch).lower() == "dynamic":
        return "dynamic"
    try:
        n = int(batch)
    except (TypeError, ValueError):
        raise ConfigError(f"batch must be a positive integer or 'dynamic', got {batch!r}") from None
    if n < 1:
        raise ConfigError(f"batch must be a positive integer or 'dynamic', got {batch!r}")
    return n


def smoke_inputs(source, batch) -> tuple[np.ndarray, np.ndarray]:
    """Reference input and MindSpore output at the artifact's batch size."""
    x, ref = source.reference_input, source.reference_output()
    if batch == "dynamic":
        return x, ref
    idx = [i % len(x) for i in range(int(batch))]
    return x[idx], ref[idx]


def relative_error(out: np.ndarray, ref: np.ndarray) -> float:
    out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
    return float(np.abs(out - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def _install(stage_files: list[Path], out_dir: Path) -> list[Path]:
    """Rename staged files into ``out_dir``: companions first, the artifact (index 0) last."""
    placed = []
    for f in stage_files[1:] + stage_files[:1]:
        dest = out_dir / f.name
        if dest.is_dir():
            raise ExportError(f"cannot write {dest}: a folder of that name exists")
        os.chmod(f, default_file_mode())  # what a plain write gives (umask), never 0600
        os.replace(f, dest)
        placed.append(dest)
    return [placed[-1]] + placed[:-1]


def _digest(files: list[Path]) -> str:
    """sha256 of the artifact; with companions (ncnn .bin, OpenVINO .bin) of all of
    them, so that new weights behind an unchanged .param/.xml give a new digest."""
    content = [f for f in files if not str(f).endswith((SIDECAR_SUFFIX, VECTORS_SUFFIX))]
    if len(content) == 1:
        return sha256_file(content[0])
    h = hashlib.sha256()
    for f in content:
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def run_export(ctx: ExportContext, name: str) -> ExportResult:
    """Build, smoke-check, annotate and install one format."""
    spec = FORMATS[name]
    start = time.perf_counter()
    # absolute: some converters (pnnx, onnx2tf) run in another working directory
    stage = Path(tempfile.mkdtemp(prefix=f".{ctx.stem}.{name}.", dir=ctx.out_dir)).resolve()
    try:
        built = BUILDERS[name](ctx, stage)
        if built.smoke_input is not None:
            x = built.smoke_input
            if built.batch != "dynamic":
                x = x[[i % len(x) for i in range(int(built.batch))]]
            ref = run_mindspore(ctx.source.net, x)
        else:
            x, ref = smoke_inputs(ctx.source, built.batch)
        try:
            out = run_artifact(name, built.files[0], x, built.meta)
        except ExportError:
            raise
        except Exception as exc:  # engines raise their own types
            raise ExportError(f"{name}: the exported artifact does not run: "
                              f"{str(exc).splitlines()[0][:200]}") from None
        err = relative_error(out, ref)
        if not np.isfinite(err) or err > spec.tolerance:
            raise ExportError(f"{name}: smoke parity failed: relative error {err:.3g} vs the "
                              f"checkpoint's MindSpore output exceeds {spec.tolerance:g}")
        # golden vectors go into the staged files before anything is hashed or signed
        files = _install(attach_vectors(ctx, name, built), ctx.out_dir)
        seconds = time.perf_counter() - start
        problem, notes = _int8_findings(built.meta) if name == "onnx-int8" else (None, [])
        return ExportResult(name, str(files[0]), spec.precision, round(seconds, 3), err,
                            spec.tolerance, _digest(files), [str(f) for f in files],
                            problem, notes, dict(built.details or {}))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _int8_findings(meta: dict) -> tuple[str | None, list]:
    """``(problem, notes)`` of an int8 artifact: a missed budget, unverified accuracy."""
    opts = meta.get("export_options", {})
    found, calib = opts.get("int8", {}), opts.get("calibration", {})
    notes = [n for n in (calib.get("note"),) if n]
    problem = None
    if found.get("budget_met") is False:
        problem = (f"onnx-int8 missed its accuracy budget: {found['metric']} "
                   f"{found['drop_pp']:.2f} pp > {found['max_drop_pp']:g} pp on "
                   f"{found['heldout_samples']} held-out training images ({found['stopped']}); "
                   f"the best artifact found was written ({found['method']}, "
                   f"{fp32_layers_text(found)})")
        if "no faster than fp32" in str(found.get("stopped")):
            problem += ("; int8 cannot meet this budget here and stay faster than fp32: ship "
                        "the fp32 onnx, or allow a larger --max-accuracy-drop")
    elif warning := mostly_fp32(found):
        notes.append(warning)
    return problem, notes


def export_checkpoint(checkpoint, formats, out_dir, model: str | None = None,
                      num_classes: int | None = None, batch="dynamic", calib_dir=None,
                      dataset: str | None = None, calib_samples: int = 256,
                      image_size: int | None = None, labels: list | None = None,
                      max_accuracy_drop_pp: float = 1.0, search_seconds: float = 300.0,
                      progress: bool = True, train_data: dict | None = None,
                      val_data: dict | None = None) -> list[ExportResult]:
    """Export a checkpoint to one or more formats; returns one result per format.

    ``model``/``num_classes``/``image_size``/``labels`` default to the
    checkpoint's metadata (an explicit ``model``/``num_classes`` that
    contradicts it is an error). ``batch`` is ``"dynamic"`` or a fixed
    size. ``onnx-int8`` calibrates on ``calib_samples`` images of
    ``calib_dir``, or ``dataset`` (``demo``, a dataset folder, ``photos``),
    or by default the checkpoint's own training split (stand-in photos only
    when none is reachable: :mod:`exporters.calibration`), then keeps layers
    in fp32 until the top-1 drop on held-out training images is at most
    ``max_accuracy_drop_pp`` percentage points or ``search_seconds`` are spent
    (``train_data``: the training split to calibrate on instead of the one
    the checkpoint names, ``{"dataset", "data_dir", "train_split"}``)
    (:mod:`exporters.int8_search`). A missed budget still writes the best
    artifact; its result's ``problem`` says so. Every artifact carries golden
    test vectors from ``val_data`` (``{"dataset", "data_dir", "val_split"}``),
    else the val split the checkpoint names (:mod:`exporters.vectors`).

    >>> export_checkpoint("best.ckpt", "onnx,onnx-int8", "out/")  # doctest: +SKIP
    [ExportResult(format='onnx', path='out/shufflenet_v2_x0_5.onnx', ...), ...]
    """
    names = parse_formats(formats)
    if calib_dir is not None and dataset is not None:
        raise ConfigError("give either --calib DIR or --dataset, not both")
    if calib_samples is None or int(calib_samples) < 1:
        raise ConfigError(f"calib_samples must be >= 1, got {calib_samples}")
    if not 0 <= float(max_accuracy_drop_pp) < 100:
        raise ConfigError(f"max accuracy drop is in percentage points, 0 to 100, "
                          f"got {max_accuracy_drop_pp}")
    if float(search_seconds) <= 0:
        raise ConfigError(f"search_seconds must be positive, got {search_seconds}")
    for problem in unused_options(names, {"calib_dir": calib_dir, "dataset": dataset}):
        log.warning("%s; ignoring it", problem)
    batch = _normalize_batch(batch)
    fixed = [n for n in names if "batch" not in FORMATS[n].options]
    if batch != "dynamic" and fixed:
        raise ConfigError(f"format(s) {', '.join(fixed)} always take one image per call; "
                          f"export them without --batch {batch}")
    for n in names:  # fail before any work when an engine is missing
        require_modules(FORMATS[n])
    if calib_dir is not None and "onnx-int8" in names:
        list_images(calib_dir)  # DataError now, not after the first exports
    if dataset is not None and "onnx-int8" in names:
        check_dataset(dataset)
    out_dir = Path(out_dir)

    problem = output_dir_problem(out_dir)  # e.g. a parent that is a file (was a traceback)
    if problem:
        raise ConfigError(problem)
    import mindspore as ms

    mode = ms.get_context("mode")  # exports run in PyNative; give the caller its mode back
    try:
        source = load_source(checkpoint, model=model, num_classes=num_classes,
                             image_size=image_size, labels=labels)
        if "qat" in source.checkpoint_meta and set(names) != {"onnx-int8"}:
            raise ConfigError(f"{Path(checkpoint).name} is a QAT checkpoint: it exports to onnx-int8 "
                              "only; export the fp32 checkpoint it was fine-tuned from for the rest")
        out_dir.mkdir(parents=True, exist_ok=True)
        ctx = ExportContext(source, out_dir, batch, str(calib_dir) if calib_dir else None,
                            dataset, int(calib_samples), float(max_accuracy_drop_pp) / 100,
                            float(search_seconds), progress=progress, train_data=train_data,
                            val_data=val_data)
        from tqdm import tqdm

        results = []
        with tqdm(names, desc="export", unit="format", leave=False, disable=None) as bar:
            for n in bar:
                bar.set_postfix_str(n)
                results.append(run_export(ctx, n))
        return results
    finally:
        ms.set_context(mode=mode)
