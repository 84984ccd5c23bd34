"""Accuracy-aware int8: quantise, measure, and keep the sensitive layers in fp32.

The drop is measured on a held-out part of the *training* data (see
:mod:`exporters.calibration`), never on val, so the parity check on val
stays an independent test of the artifact. The search:

1. quantises every layer with MinMax calibration, per-channel weights;
2. over budget: tries Percentile (99.999) calibration, keeps the better;
3. still over budget: ranks the layers by how much logit error keeping each
   one wholly in fp32 (input activation, weights, bias:
   :mod:`exporters.float_layers`) removes on held-out images, and greedily
   keeps the best of them in fp32, one more per step, until the budget holds;
4. stops when the budget holds, when ``search_seconds`` is spent or
   ``max_trials`` are measured, or when
   the float layers make the model no faster than fp32 (where int8-all was
   faster: a mixed model slower than fp32 is worse than fp32 in every way), and returns
   the best model found either way (a missed budget is reported, not hidden:
   the caller writes the artifact and exits non-zero).

Trials are judged by **expected top-1 flips**, not by counted ones: each
held-out image's flip probability comes from its own logit error against its
fp32 margin (:func:`flip_probabilities`), so a trial's score moves smoothly
with the error instead of by whole images (one image of 80 is 1.25 pp, and
the flips go both ways: a counted delta on so few images is mostly noise).
Trials rank by that expected flip rate, then by relative logit error; the
budget holds when the expected flip rate is within it -- with labels, the
expected rate of images *lost* (flips of images fp32 gets right: a flip of
one it already gets wrong costs no accuracy), without labels every flip.
The counted drop and its agreement are still reported.

Not tried, measured (ONNX Runtime 1.32, real-photo 3-class set, x0_5, 64 px):
Entropy calibration through ``quantize_static`` runs with 128 bins and gives
one candidate threshold -- a model byte-identical to MinMax; per-tensor
weights were worse than per-channel on all four checkpoints tried and no
faster (x1_0, 224 px, 1 thread: per-channel / per-tensor latency 1.003-1.010).
The logits themselves stay float (:func:`exporters.precision.float_outputs`).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from runtimes import create_runner
from shufflenet.artifact import Artifact
from shufflenet.errors import ExportError
from shufflenet.fidelity import compare, logit_error

from .float_layers import keep_layers_float
from .int8_metrics import heldout_drop
from .precision import float_outputs, share_concat_qparams

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile")
DEFAULT_MAX_DROP = 0.01          # 1 pp
DEFAULT_SEARCH_SECONDS = 300.0
_SENSITIVITY_SAMPLES = 32
_QUANTISED_OPS = ("Conv", "Gemm", "MatMul")


@dataclass
class Trial:
    method: str
    per_channel: bool
    fp32_layers: list
    drop: float                 # counted: fraction of held-out images lost (or changed)
    agreement: float            # top-1 agreement with fp32 on the held-out images
    logit_error: float          # relative L2 error of the logits vs fp32 on the held-out images
    seconds: float
    expected_flips: float = 0.0   # fraction of images expected to change top-1 (flip_probabilities)
    flips_ci: tuple = (0.0, 0.0)  # its confidence interval over the held-out images

    def key(self) -> tuple:
        """Better first: fewer expected flips, then logits closer to fp32. Never the counted
        drop: it moves by whole images, and on a few dozen it is mostly noise."""
        return (round(self.expected_flips, 6), self.logit_error)

    def to_dict(self) -> dict:
        return {**asdict(self), "drop_pp": round(100 * self.drop, 3),
                "logit_error": round(self.logit_error, 5),
                "expected_flips_pp": round(100 * self.expected_flips, 3),
                "flips_ci_pp": [round(100 * v, 3) for v in self.flips_ci]}


@dataclass
class Int8Search:
    """What the search chose and why."""
    model: object = field(repr=False)          # onnx.ModelProto of the best trial
    all_int8: object = field(repr=False)       # the best every-layer-int8 model
    method: str
    per_channel: bool
    fp32_layers: list
    measured: bool                             # False: no held-out images (unverified)
    metric: str                                # "expected images lost" (labelled) | "expected top-1 flips" | "unmeasured"
    fp32_accuracy: float | None
    drop: float | None                         # expected flip rate of the chosen trial
    max_drop: float
    met: bool | None                           # None when unmeasured
    stopped: str                               # why the search ended
    heldout_samples: int
    seconds: float
    trials: list = field(default_factory=list)
    layers: int = 0                            # the model's quantisable layers (Conv/Gemm/MatMul)

    def summary(self) -> dict:
        """The metadata block written into the artifact: no timings, so a re-export that
        makes the same choices writes the same bytes (see :meth:`timings`)."""
        trials = []
        for t in self.trials:
            d = t.to_dict()
            d.pop("seconds")
            trials.append(d)
        return {"method": self.method, "per_channel": self.per_channel,
                "fp32_layers": list(self.fp32_layers), "layers": self.layers,
                "measured": self.measured,
                "metric": self.metric, "heldout_samples": self.heldout_samples,
                "fp32_accuracy": self.fp32_accuracy,
                "drop_pp": None if self.drop is None else round(100 * self.drop, 3),
                "observed_drop_pp": (round(100 * self.trials_best().drop, 3)
                                     if self.trials_best() else None),
                "flips_ci_pp": (self.trials_best().to_dict()["flips_ci_pp"]
                                if self.trials_best() else None),
                "max_drop_pp": round(100 * self.max_drop, 3), "budget_met": self.met,
                "stopped": self.stopped, "trials": trials}

    def trials_best(self):
        """The trial that was chosen (None when unmeasured)."""
        for t in self.trials:
            if t.method == self.method and t.fp32_layers == list(self.fp32_layers):
                return t
        return None

    def timings(self) -> dict:
        return {"search_seconds": round(self.seconds, 2),
                "trial_seconds": [t.seconds for t in self.trials]}


class _Reader:
    """onnxruntime CalibrationDataReader over preprocessed images."""
    def __init__(self, images: np.ndarray, input_name: str):
        self.images, self.name, self.pos = images, input_name, 0

    def get_next(self):
        if self.pos >= len(self.images):
            return None
        x = self.images[self.pos:self.pos + 1]
        self.pos += 1
        return {self.name: np.ascontiguousarray(x, dtype=np.float32)}

    def rewind(self):
        self.pos = 0

    def __len__(self):
        return len(self.images)


@contextlib.contextmanager
def open_runner(model, threads: int = 1):
    """An activated ONNX Runtime runner on ``model`` (an ``onnx.ModelProto``), through the
    project's runners like every other inference here (:meth:`Runner.infer` pads a fixed
    batch)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix=".int8-trial.") as tmp:
        path = Path(tmp) / "trial.onnx"
        onnx.save_model(model, str(path))
        trial = Artifact.from_metadata(path, {"format": "onnx", "precision": "int8",
                                              "note": "int8 search trial"})
        with create_runner("onnxruntime", trial, threads=threads) as runner:
            yield runner


def run_model(model, x: np.ndarray, batch: int = 32) -> np.ndarray:
    """Logits of an ONNX model on ``x`` (ONNX Runtime CPU through the project's runner)."""
    with open_runner(model, threads=2) as runner:
        return np.concatenate([runner.infer(np.ascontiguousarray(x[i:i + batch], np.float32))
                               for i in range(0, len(x), batch)])


class Quantizer:
    """Pre-processes once, calibrates once per method (cached), quantises per request."""
    def __init__(self, model, images: np.ndarray, work_dir: Path):
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:
            raise ExportError(f"int8 quantisation needs opset >= 13, the model has {opset}")
        self.tmp = Path(tempfile.mkdtemp(prefix=".int8.", dir=work_dir))
        self.images, self.input_name = images, model.graph.input[0].name
        self.source_model = model
        src, self.pre = self.tmp / "fp32.onnx", self.tmp / "pre.onnx"
        onnx.save_model(model, str(src))
        try:
            # skip_symbolic_shape: the symbolic pass needs sympy and adds nothing here
            quant_pre_process(str(src), str(self.pre), skip_symbolic_shape=True)
        except Exception as exc:
            raise ExportError(f"int8 pre-processing failed: {str(exc).splitlines()[0][:200]}") from None
        self.pre_model = onnx.load(str(self.pre))
        self.layers = [n.name for n in self.pre_model.graph.node if n.op_type in _QUANTISED_OPS]

    def quantize(self, method: str = "minmax", per_channel: bool = True, exclude=()):
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        if method not in METHODS:
            raise ExportError(f"int8 calibration method {method!r}: use one of {', '.join(METHODS)}")
        calib = {"minmax": CalibrationMethod.MinMax,
                 "percentile": CalibrationMethod.Percentile}[method]
        dst = self.tmp / f"q.{method}.{int(per_channel)}.{len(exclude)}.onnx"
        extra = {"CalibMovingAverage": False}
        if method == "percentile":
            extra["CalibPercentile"] = 99.999
        chatter = io.StringIO()     # ORT's histogram calibrators print to stdout: tables live there
        try:
            with contextlib.redirect_stdout(chatter):
                quantize_static(str(self.pre), str(dst), _Reader(self.images, self.input_name),
                                quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, per_channel=per_channel,
                                nodes_to_exclude=list(exclude) or None, calibrate_method=calib,
                                extra_options=extra,
                                calibration_cache_path=str(self.tmp / f"ranges.{method}.json"))
        except Exception as exc:
            raise ExportError(f"int8 quantisation ({method}) failed: "
                              f"{str(exc).splitlines()[0][:200]}") from None
        log.debug("onnxruntime calibration output: %s", chatter.getvalue())
        q = onnx.load(str(dst))
        dst.unlink()
        share_concat_qparams(q)
        float_outputs(q)
        q.graph.name = self.source_model.graph.name
        q.producer_name = self.source_model.producer_name
        q.producer_version = self.source_model.producer_version
        return q

    def close(self):
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)


def layer_sensitivity(fp32_model, qdq_model, layers: list, x: np.ndarray,
                      deadline: float | None = None) -> list[tuple[str, float]]:
    """``[(layer, error removed)]``, the layer whose float copy helps most first.

    Measured, not modelled: each layer alone is kept wholly in float (input
    activation, weights, bias: :func:`keep_layers_float`) in the int8 model,
    and the relative logit error against fp32 on ``x`` is compared with the
    all-int8 one. A model of the noise (per-layer SQNR) ranked layers whose
    float copy changed nothing measurable on ShuffleNetV2 (the error is spread
    over ~100 activation sites), so the search asks the model instead.
    Layers not reached before ``deadline`` (``time.perf_counter()``) rank last.
    """
    x = x[:_SENSITIVITY_SAMPLES]
    ref = run_model(fp32_model, x)
    base = logit_error(run_model(qdq_model, x), ref)
    ranked = []
    for name in layers:
        if deadline is not None and time.perf_counter() > deadline:
            ranked.append((name, -math.inf))
            continue
        one = keep_layers_float(qdq_model, fp32_model, [name])
        ranked.append((name, base - logit_error(run_model(one, x), ref)))
    ranked.sort(key=lambda item: -item[1])
    return ranked


def search_int8(fp32_model, images: np.ndarray, heldout: np.ndarray | None,
                labels: np.ndarray | None, work_dir: Path, max_drop: float = DEFAULT_MAX_DROP,
                search_seconds: float = DEFAULT_SEARCH_SECONDS, progress: bool = True,
                max_trials: int | None = None) -> Int8Search:
    """Find the int8 model whose expected flip rate on the held-out images is within
    ``max_drop`` (see module doc).

    ``heldout=None`` (no held-out images): MinMax per-channel, unmeasured.
    ``max_trials``: also stop once that many trials are measured -- a limit that, unlike
    ``search_seconds``, does not depend on how busy the machine is (``None``: no limit).
    """
    from tqdm import tqdm

    start = time.perf_counter()
    quant = Quantizer(fp32_model, images, work_dir)
    bar = tqdm(desc="int8 search", unit="trial", file=sys.stderr, disable=not progress or None,
               leave=False)
    try:
        first = quant.quantize("minmax", True)
        if heldout is None or len(heldout) == 0:
            bar.update(1)
            return Int8Search(first, first, "minmax", True, [], False, "unmeasured", None, None,
                              float(max_drop), None, "no held-out images", 0,
                              time.perf_counter() - start, layers=len(quant.layers))
        ref = run_model(fp32_model, heldout)
        ref_top1 = ref.argmax(1)
        labelled = labels is not None
        fp32_acc = float((ref_top1 == labels).mean()) if labelled else None

        def measure(model, method, per_channel, layers) -> Trial:
            t0 = time.perf_counter()
            out = run_model(model, heldout)
            drop = heldout_drop(ref_top1, out.argmax(1), labels)
            # labelled: the expected share of images lost (flips of fp32-right images)
            fid = compare(out, ref, labels if labelled else None)
            rate = fid["expected_lost"]
            trial = Trial(method, per_channel, list(layers), drop, fid["agreement"],
                          fid["logit_error"], round(time.perf_counter() - t0, 3), rate,
                          fid["expected_lost_ci"])
            bar.update(1)
            bar.set_postfix_str(f"{method} fp32 layers {len(layers)}: expected flips "
                                f"{100 * rate:.2f} pp")
            return trial

        trials = [measure(first, "minmax", True, [])]
        best_model, best = first, trials[0]

        def out_of_budget() -> str | None:
            """Why the search must stop before its next trial (None: it may go on)."""
            if max_trials is not None and len(trials) >= max_trials:
                return "trial limit reached"
            if time.perf_counter() - start > search_seconds:
                return "search time spent"
            return None

        stopped = "budget met"
        for method, per_channel in (("percentile", True),):
            if best.expected_flips <= max_drop:
                break
            if why := out_of_budget():
                stopped = why
                break
            model = quant.quantize(method, per_channel)
            trial = measure(model, method, per_channel, [])
            trials.append(trial)
            if trial.key() < best.key():
                best_model, best = model, trial
        all_int8 = best_model
        if best.expected_flips > max_drop and stopped == "budget met":
            ranked = layer_sensitivity(quant.pre_model, all_int8, quant.layers, heldout,
                                       deadline=start + search_seconds)
            log.info("int8 sensitivity order: %s", [n for n, _ in ranked[:8]])
            # Float layers cost time (each also turns its producer's output float): once
            # the mixed model is no faster than fp32 it is worse than fp32 in every way, so
            # the search stops there -- unless int8 was never faster here (small inputs),
            # when speed is not what int8 buys and only accuracy counts.
            probe = heldout[:1]
            speed_matters = _faster(all_int8, fp32_model, probe)
            kept: list[str] = []
            for name, _ in ranked:
                if best.expected_flips <= max_drop:
                    break
                if why := out_of_budget():
                    stopped = why
                    break
                kept.append(name)
                model = keep_layers_float(all_int8, quant.pre_model, kept)
                trial = measure(model, best.method, best.per_channel, kept)
                trials.append(trial)
                if speed_matters and not _faster(model, fp32_model, probe):
                    stopped = f"{len(kept)} fp32 layers made it no faster than fp32"
                    break
                if trial.key() < best.key():
                    best_model, best = model, trial
            else:
                if best.expected_flips > max_drop:
                    stopped = "every layer tried"
        met = best.expected_flips <= max_drop
        if met:
            stopped = "budget met"
        return Int8Search(best_model, all_int8, best.method, best.per_channel, best.fp32_layers,
                          True, "expected images lost" if labelled else "expected top-1 flips", fp32_acc,
                          best.expected_flips, float(max_drop), met, stopped, int(len(heldout)),
                          time.perf_counter() - start, trials, len(quant.layers))
    finally:
        bar.close()
        quant.close()


_SPEED_MARGIN = 0.95     # an int8 model must buy at least 5 % over fp32 to be worth its error


def _faster(model, fp32_model, x: np.ndarray, seconds: float = 0.5) -> bool:
    """Is ``model`` clearly faster than ``fp32_model`` here (median batch-1 latency at most
    :data:`_SPEED_MARGIN` of fp32's, 1 thread, the two timed interleaved)?"""
    lat = interleaved_latency_ms({"fp32": fp32_model, "model": model}, x, seconds=seconds)
    return lat["model"] <= _SPEED_MARGIN * lat["fp32"]


def interleaved_latency_ms(models: dict, x: np.ndarray, seconds: float = 2.0,
                           threads: int = 1) -> dict:
    """Median batch-1 latency (ms) of each model, all timed round-robin in one run
    (each through the project's ONNX Runtime runner)."""
    feed = np.ascontiguousarray(x[:1], np.float32)
    with contextlib.ExitStack() as stack:
        runners = {k: stack.enter_context(open_runner(m, threads)) for k, m in models.items()}
        for r in runners.values():               # warm-up
            for _ in range(3):
                r.infer(feed)
        times = {k: [] for k in runners}
        stop = time.perf_counter() + seconds
        while time.perf_counter() < stop or min(len(v) for v in times.values()) < 5:
            for k, r in runners.items():
                t0 = time.perf_counter()
                r.infer(feed)
                times[k].append(time.perf_counter() - t0)
    return {k: round(1000 * float(np.median(v)), 4) for k, v in times.items()}
