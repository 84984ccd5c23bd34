"""Run the checkpoint and every (artifact, engine) pair on the same inputs; compare.

The comparator needs only :func:`runtimes.create_runner` (the ``.ckpt`` runs
on engine ``mindspore``, the reference) and the artifacts' metadata. Inputs
are preprocessed once per batch and fed to every runner; metrics stream.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from runtimes import (
    ENGINES,
    create_runner,
    engines_for_artifact,
    get_engine,
    resolve_artifact,
)
from runtimes.devices import InProcessDevice
from shufflenet import __version__
from shufflenet.checkpoint import sha256_file
from shufflenet.data.preprocess import EvalTransform
from shufflenet.errors import (
    CheckpointError,
    ConfigError,
    GateFailed,
    ShuffleNetError,
    first_line,
)

from .contract import contract_mismatches
from .inputs import resolve_inputs
from .layers import localize_divergence
from .metrics import PairMetrics
from .profiles import GateCheck, default_profile_name, load_profile
from .report import LayerDivergence, PairResult, ParityReport

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_BATCH", "check_artifacts", "run_parity"]

DEFAULT_BATCH = 8
LOCALIZE_SAMPLES = 4


def _transform_of(meta: dict):
    return EvalTransform.from_metadata(meta)


def check_artifacts(ref_meta: dict, artifacts: list, ckpt_sha: str,
                    checkpoint_has_preprocessing: bool = True, contract: dict | None = None):
    """Read every artifact's metadata; refuse ones of another model; check the contract.

    Model and class count must match the checkpoint (else nothing can be
    compared). The deployment contract -- labels, preprocessing, input size
    -- is checked against ``contract`` (the checkpoint's own metadata; for a
    checkpoint without preprocessing metadata, the first artifact's): each
    mismatch is reported with its field and fails that pair. ``artifacts`` are
    resolved :class:`~shufflenet.artifact.Artifact` values. Returns
    ``(transform, [(artifact, source_matches_checkpoint, mismatches)])``
    where ``transform`` is the checkpoint's preprocessing, fed to every pair.
    """
    ref_tf = _transform_of(ref_meta) if checkpoint_has_preprocessing else None
    reference = dict(contract if contract is not None else ref_meta)
    out = []
    for art in artifacts:
        meta, name = art.metadata, art.name
        if meta.get("model") and meta["model"] != ref_meta["model"]:
            raise ConfigError(f"{name} is an export of {meta['model']} but the checkpoint is "
                              f"{ref_meta['model']}: parity needs artifacts of the same model")
        if int(meta.get("num_classes", ref_meta["num_classes"])) != int(ref_meta["num_classes"]):
            raise ConfigError(f"{name} has {meta['num_classes']} classes but the checkpoint has "
                              f"{ref_meta['num_classes']}: not an export of this checkpoint")
        if ref_tf is None:
            # no preprocessing recorded in the checkpoint: the first artifact's is the contract
            ref_tf = _transform_of(meta)
            reference.update({k: meta[k] for k in ("mean", "std", "crop_pct", "interpolation",
                                                    "image_size", "channel_order") if k in meta})
        src = meta.get("source_sha256")
        match = None if not src else src == ckpt_sha
        if match is False and not fine_tuned_from(meta, ckpt_sha):
            log.warning("%s was exported from another checkpoint file (sha256 %s...)", name, src[:12])
        out.append((art, match, contract_mismatches(reference, meta)))
    return ref_tf, out


def fine_tuned_from(meta: dict, ckpt_sha: str) -> str | None:
    """The QAT checkpoint's name when the artifact was exported from a quantization-aware
    fine-tune of the checkpoint with sha256 ``ckpt_sha`` (else None)."""
    qat = (meta.get("export_options") or {}).get("qat") or {}
    if ckpt_sha and qat.get("fine_tuned_from_sha256") == ckpt_sha:
        return str(meta.get("source_checkpoint") or "a QAT checkpoint")
    return None


def _candidate_engines(art, requested: list[str] | None, device) -> list[str]:
    """The engines an artifact runs on: installed here, or (on a device) the requested ones."""
    if not device.in_process:
        able = [e for e in requested if art.format in ENGINES[e].formats]
    else:
        able = engines_for_artifact(art)
        if requested:
            able = [e for e in requested if e in able]
    if not able:
        everyone = engines_for_artifact(art, installed_only=False)
        if requested:
            raise ConfigError(f"none of the requested engines ({', '.join(requested)}) runs "
                              f"{art.name}; engines for it: {', '.join(everyone) or 'none'}")
        raise ConfigError(f"no installed engine runs {art.name}; engines for it: "
                          f"{', '.join(everyone) or 'none'}")
    return able


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc="parity", file=sys.stderr, disable=not enabled,
                leave=False)


def _open_pairs(stack, checked, requested, profile, threads, engine_options,
                device=None) -> list[PairResult]:
    """One activated runner per (artifact, engine); a runner that fails to load is an ERROR pair.

    Each runner is ``device.open(...)`` (:mod:`runtimes.devices`): in this process,
    or on another device through its agent (the engine need not be installed here).
    """
    pairs = []
    for art, match, mismatches in checked:
        for engine in _candidate_engines(art, requested, device):
            prof = load_profile(profile, default_profile_name(art.metadata, match))
            pair = PairResult(str(art.path), art.format, art.precision, engine,
                              profile=prof.to_dict(), source_matches_checkpoint=match)
            pair.gate_profile, pair.resolved = prof, art
            pair.accumulator = PairMetrics(confidence=prof.get("confidence", 0.95))
            pair.contract = list(mismatches)
            if any(m.startswith("input_size") for m in mismatches):
                pairs.append(pair)        # it cannot take the checkpoint's input: judged unrun
                continue
            try:
                pair.runner = stack.enter_context(device.open(
                    engine, art, threads, dict(engine_options.get(engine, {}))))
                pair.device = dict(pair.runner.device)
                pair.engine_version = pair.runner.info().engine_version
            except ShuffleNetError as exc:
                pair.error = str(exc)
            except Exception as exc:  # engine-internal failure while loading the file
                pair.error = f"{engine} cannot load {art.name}: {first_line(exc)}"
            pairs.append(pair)
    return pairs


def _stream(inputs, transform, batch_size: int, reference, pairs, progress: bool):
    """Feed every batch to the reference and each pair; returns the first few samples."""
    first = None
    with _progress(len(inputs), progress) as bar:
        for batch in inputs.batches(transform, batch_size):
            if first is None:
                first = batch.x[:LOCALIZE_SAMPLES]
            ref_out = reference.infer(batch.x)
            for pair in pairs:
                if pair.error or pair.runner is None:
                    continue
                t0 = time.perf_counter()
                try:
                    pair.accumulator.update(ref_out, pair.runner.infer(batch.x), batch.labels)
                except ShuffleNetError as exc:
                    pair.error = str(exc)
                except Exception as exc:  # an engine that cannot run the file is a finding
                    pair.error = (f"{pair.engine} failed to run {Path(pair.artifact).name}: "
                                  f"{first_line(exc)}")
                pair.seconds += time.perf_counter() - t0
            bar.update(len(batch.x))
    return first


def run_parity(checkpoint, artifacts, engines=None, images=None, dataset=None, split: str = "val",
               samples: int | None = None, random: int | None = None, profile=None,
               batch_size: int = DEFAULT_BATCH, threads: int | None = None, localize: bool = True,
               progress: bool = True, raise_on_fail: bool = False, model: str | None = None,
               num_classes: int | None = None, engine_options: dict | None = None,
               allow_inconclusive: bool = False, inputs=None, device=None) -> ParityReport:
    """Compare a checkpoint with each artifact on each engine that can run it.

    ``profile``: ``None`` (each artifact's precision picks fp32/fp16/int8),
    a profile name, or a YAML/JSON file of overrides. ``model`` /
    ``num_classes`` are used only when the checkpoint's metadata lacks them
    (e.g. a MindCV release). ``engine_options`` maps an engine name to runner
    options, e.g. ``{"openvino": {"inference_precision": "bf16"}}``; those of
    ``mindspore`` go to the reference (``{"mode": "graph"}``). Returns a
    :class:`ParityReport`; with ``raise_on_fail`` a failing pair raises
    :class:`GateFailed` (after the report is built). ``device``: a
    :class:`runtimes.devices.Device` (an ssh host, the emulated ARM64 device)
    the artifacts run on, through the agent, with the ``engines`` given; the
    reference stays here in MindSpore.

    >>> report = run_parity("best.ckpt", ["m.onnx", "m.int8.onnx"])   # doctest: +SKIP
    >>> report.passed, [p.status for p in report.pairs]               # doctest: +SKIP
    """
    started = time.perf_counter()
    if not artifacts:
        raise ConfigError("give at least one artifact to compare with the checkpoint")
    arts = [resolve_artifact(a) for a in artifacts]   # Artifacts pass through as they are
    if batch_size is None or batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")
    requested = [e.lower() for e in engines] if engines else None
    if device is not None and not device.in_process and not requested:
        raise ConfigError("parity on a device needs the engine(s) to run there")
    device = device or InProcessDevice()
    if requested:
        for e in requested:
            get_engine(e)                 # unknown engine -> clear error
    engine_options = engine_options or {}
    ref_options = dict(engine_options.get("mindspore", {}))   # e.g. mode="graph"
    ref_options.update({k: v for k, v in (("model", model), ("num_classes", num_classes)) if v})
    reference = create_runner("mindspore", checkpoint, threads=threads, **ref_options)
    with contextlib.ExitStack() as stack:
        stack.enter_context(reference)
        ref_meta = dict(reference.metadata)
        ckpt_sha = sha256_file(checkpoint)
        ckpt_meta = dict(reference.resolved.metadata)   # the checkpoint's own, read once
        own_preprocessing = "image_size" in ckpt_meta
        transform, checked = check_artifacts(ref_meta, arts, ckpt_sha, own_preprocessing,
                                             contract=ckpt_meta)
        if inputs is None:
            inputs = resolve_inputs(images=images, dataset=dataset, split=split, samples=samples,
                                    random=random, image_size=transform.image_size,
                                    model_labels=ref_meta.get("labels"),
                                    num_classes=int(ref_meta["num_classes"]))
        pairs = _open_pairs(stack, checked, requested, profile, threads, engine_options, device)
        first = _stream(inputs, transform, batch_size, reference, pairs, progress)
    seen_at_export = _seen_at_export(checked, inputs)
    for pair in pairs:
        pair.allow_inconclusive = bool(allow_inconclusive)
        ran = pair.runner is not None
        pair.runner = None                   # closed by the ExitStack above
        if pair.error:
            continue
        contract = GateCheck("deployment_contract", 0, len(pair.contract), not pair.contract,
                             "labels, preprocessing and input size equal the checkpoint's",
                             detail="; ".join(pair.contract))
        if not ran:
            pair.checks = [contract]
            continue
        pair.metrics = pair.accumulator.result()
        pair.checks = [contract] + pair.gate_profile.evaluate(pair.metrics)
        if pair.artifact in seen_at_export:
            shared = seen_at_export[pair.artifact]
            pair.checks.append(GateCheck(
                "unseen_images", 0, shared, False,
                "no parity image was used to calibrate or tune the artifact at export",
                detail=f"{shared} of the {len(inputs)} parity images calibrated or tuned this "
                       "artifact at export, so its agreement and accuracy here are optimistic; "
                       "judge it on a split the export did not use"))
        numbers_failed = any(c.state != "PASS" for c in pair.checks if c.gate != "deployment_contract")
        if numbers_failed and localize and first is not None and not device.in_process:
            pair.divergence = LayerDivergence(False, "layer localisation runs on this machine's "
                                              "engines only; rerun parity here to localise")
        elif numbers_failed and localize and first is not None:
            pair.divergence = _localize(checkpoint, pair, first, pair.gate_profile, threads, ref_meta,
                                        engine_options.get(pair.engine, {}))
    report = ParityReport(
        checkpoint=str(checkpoint), checkpoint_sha256=ckpt_sha, model=ref_meta["model"],
        num_classes=int(ref_meta["num_classes"]),
        reference={"engine": "mindspore", "version": reference.info().engine_version,
                   "artifact": str(checkpoint)},
        inputs=inputs.fingerprint(transform.to_dict()), pairs=pairs,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        seconds=time.perf_counter() - started, toolchain_version=__version__)
    if not own_preprocessing:
        report.notes.append("the checkpoint carries no preprocessing metadata; images were "
                            "prepared as the artifacts' metadata describes")
    if inputs.kind == "random":
        report.notes.append("inputs are random tensors, not images: agreement on them says "
                            "little about agreement on real data")
    for art, match, _ in checked:
        if match is False:
            qat = fine_tuned_from(art.metadata, ckpt_sha)
            report.notes.append(
                f"{art.name} was exported from {qat}, a QAT fine-tune of this checkpoint: judged "
                "as int8 against it" if qat else
                f"{art.name} records another source checkpoint (sha256 differs)")
    for art, _, _ in checked:
        calib = (art.metadata.get("export_options") or {}).get("calibration") or {}
        note = f"{art.name}: {calib.get('note')}" if calib.get("stand_in") else None
        if note and note not in report.notes:
            report.notes.append(note)
    if raise_on_fail and not report.passed:
        raise GateFailed(failure_message(report))
    return report


def _seen_at_export(checked, inputs) -> dict:
    """``{artifact: n}``: how many of the parity images its export calibrated or held out on.

    An int8 artifact records the 16-hex-digit digests of every image its export
    used (calibration and the held-out part its search was judged on); parity
    images hashed the same way (file bytes, or pixels) are compared with them.
    """
    here = {d[:16] for d in inputs.hashes if d}
    out = {}
    for art, _, _ in checked:
        calib = (art.metadata.get("export_options") or {}).get("calibration") or {}
        shared = len(here & set(calib.get("images_sha256") or []))
        if shared:
            out[str(art.path)] = shared
    return out


def _localize(checkpoint, pair: PairResult, x: np.ndarray, prof, threads, ref_meta, options):
    try:
        return localize_divergence(checkpoint, pair.resolved, x,
                                   threshold=prof.get("layer_rel_error", 1e-3), engine=pair.engine,
                                   threads=threads, options=options, model_name=ref_meta.get("model"),
                                   num_classes=ref_meta.get("num_classes"))
    except Exception as exc:  # localisation is a diagnosis; never hide the verdict behind it
        log.warning("layer localisation failed for %s: %s", pair.name, exc)
        return LayerDivergence(False, f"localisation failed: {str(exc).splitlines()[0][:200]}")


def failure_message(report: ParityReport) -> str:
    """The one-line error the CLI prints when pairs fail (details are in the table)."""
    bad = report.failed()
    names = []
    for p in bad:
        where = p.divergence.first_divergent if p.divergence else None
        tail = f", first divergent layer {where}" if where else ""
        if getattr(p, "contract", None):
            tail += f", deployment contract: {'; '.join(p.contract)}"
        tail += "".join(f", {c.detail}" for c in p.checks if c.gate == "unseen_images")
        if p.status == "INCONCLUSIVE" and p.samples_needed:
            tail += f", ~{p.samples_needed} samples would settle it (or --allow-inconclusive)"
        names.append(f"{p.name} ({p.status.lower()}{tail})")
    return f"parity failed for {len(bad)} of {len(report.pairs)} pair(s): " + ", ".join(names)
