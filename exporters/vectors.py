"""Golden test vectors bundled with every exported artifact.

A few real images of the user's val split (the demo's digits for the
demo; the stand-in photos only when no val split is reachable, said so in
the vectors), the checkpoint's MindSpore logits on them, and the
tolerances of the artifact's precision profile
(:mod:`shufflenet.tolerances`, the table parity's profiles use). ``shufflenet
verify`` runs them through the artifact on a device without MindSpore and
without the checkpoint.

Where they live: an ONNX file carries them in ``metadata_props`` under
:data:`ONNX_VECTORS_KEY` (beside the artifact metadata); every other format
gets ``<artifact>.vectors.json`` next to the metadata sidecar
(:func:`vectors_path`). That sidecar also records the sha256 of each file it
was made for (the model files and the metadata sidecar), so one swapped in
from another artifact is named as such.

Inputs are stored as the uint8 RGB crop *before* normalisation (the
artifact's contract then gives the tensor: ``(u8 - mean) / std`` in
float32, exactly what :class:`shufflenet.data.preprocess.EvalTransform`
computes), each row delta-coded along the width and zlib-compressed: at
64 px a real photo takes ~5-8 KB. When the crop does not reproduce the
tensor bit for bit (a one-channel model averages RGB), the float32 tensor is
stored instead. Logits are little-endian float32. Everything is base64 in
one JSON document, readable with NumPy and the standard library alone
(``exporters/reference_check.py`` is the portable version of the check).

This module imports NumPy and the standard library at load time (``verify``
runs it on machines without MindSpore); building vectors (:func:`attach_vectors`)
imports the exporter's MindSpore side lazily.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

from exporters.calibration import stratified_order
from shufflenet.data.pipeline import open_source
from shufflenet.data.preprocess import EvalTransform, normalize_crop, sample_photos
from shufflenet.errors import ExportError, ShuffleNetError, VerifyFailed
from shufflenet.fileio import atomic_write, sha256_file
from shufflenet.tolerances import tolerances_for
from shufflenet.versions import package_versions

from .formats import FORMATS
from .source import run_mindspore

__all__ = ["BUDGET_BYTES", "BUDGET_SHARE", "DEFAULT_COUNT", "ONNX_VECTORS_KEY", "VECTORS_SUFFIX", "decode_inputs",
           "decode_logits", "read_vectors", "vectors_path", "judge"]

ONNX_VECTORS_KEY = "shufflenet.test_vectors"
VECTORS_SUFFIX = ".vectors.json"
SCHEMA = 1
DEFAULT_COUNT = 8
# added bytes per artifact at most: max(BUDGET_BYTES, BUDGET_SHARE of the model files). Real
# photos take ~11 KB a vector at 64 px (8 fit), ~117 KB at 224 px (fewer are kept, >= 1)
BUDGET_BYTES = 128 * 1024
BUDGET_SHARE = 0.05
# the profile gates judged per vector, and those judged over the set
PER_VECTOR_GATES = ("max_rel_error", "min_cosine")
SET_GATES = ("min_mean_cosine", "min_top1_agreement")


def vectors_path(artifact: str | os.PathLike) -> Path:
    """``m.mnn`` -> ``m.mnn.vectors.json`` (found like the metadata sidecar)."""
    return Path(str(artifact) + VECTORS_SUFFIX)


# -- encoding -------------------------------------------------------------------------
def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _as_crop(x: np.ndarray, mean, std) -> np.ndarray | None:
    """The uint8 HWC crop that normalises to ``x`` bit for bit, or None."""
    if x.ndim != 3 or x.shape[0] != len(mean):
        return None
    hwc = x.transpose(1, 2, 0).astype(np.float64)
    u8 = np.clip(np.rint(hwc * np.asarray(std) + np.asarray(mean)), 0, 255).astype(np.uint8)
    return u8 if np.array_equal(normalize_crop(u8, mean, std).view(np.uint32),
                                np.ascontiguousarray(x, np.float32).view(np.uint32)) else None


def _encode_input(x: np.ndarray, mean, std) -> tuple[str, dict]:
    crop = _as_crop(x, mean, std)
    if crop is not None:
        delta = crop.copy()
        delta[:, 1:] = crop[:, 1:] - crop[:, :-1]          # uint8 arithmetic wraps mod 256
        return _b64(zlib.compress(delta.tobytes(), 9)), {
            "encoding": "uint8-hwc-rgb", "filter": "delta-w", "shape": list(crop.shape)}
    raw = np.ascontiguousarray(x, "<f4").tobytes()
    return _b64(zlib.compress(raw, 9)), {"encoding": "float32-nchw", "filter": "none",
                                         "shape": list(x.shape)}


def decode_inputs(vectors: dict, metadata: dict) -> np.ndarray:
    """The (N, C, H, W) float32 inputs, normalised with the artifact's own mean/std."""
    spec = vectors["input"]
    out = []
    for v in vectors["vectors"]:
        raw = zlib.decompress(_unb64(v["input"]))
        if spec["encoding"] == "uint8-hwc-rgb":
            delta = np.frombuffer(raw, np.uint8).reshape(spec["shape"])
            crop = np.cumsum(delta, axis=1, dtype=np.uint8)   # undoes the delta, mod 256
            out.append(normalize_crop(crop, metadata["mean"], metadata["std"]))
        elif spec["encoding"] == "float32-nchw":
            out.append(np.frombuffer(raw, "<f4").reshape(spec["shape"]).astype(np.float32))
        else:
            raise ExportError(f"unknown test-vector encoding {spec['encoding']!r}")
    return np.ascontiguousarray(np.stack(out))


def decode_logits(vectors: dict) -> np.ndarray:
    return np.stack([np.frombuffer(_unb64(v["logits"]), "<f4") for v in vectors["vectors"]])


# -- reading --------------------------------------------------------------------------
def read_vectors(artifact: str | os.PathLike) -> dict:
    """The bundled vectors of ``artifact`` (ONNX metadata_props, else the vectors sidecar).

    Raises :class:`ExportError` (one line) when there are none or they are unreadable.
    """
    artifact = Path(artifact)
    text = None
    if artifact.suffix == ".onnx":
        text = _onnx_prop(artifact, ONNX_VECTORS_KEY)
    side = vectors_path(artifact)
    if text is None and side.exists():
        text = side.read_text()
    if text is None:
        raise ExportError(f"{artifact.name} carries no test vectors (no ONNX metadata_props entry "
                          f"{ONNX_VECTORS_KEY!r}, no {side.name}); re-export it with this toolchain")
    try:
        vec = json.loads(text)
        if vec.get("schema") != SCHEMA or not vec.get("vectors"):
            raise ValueError(f"schema {vec.get('schema')!r}, {len(vec.get('vectors') or [])} vectors")
        decode_logits(vec)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ExportError(f"the test vectors of {artifact.name} are unreadable: "
                          f"{str(exc).splitlines()[0][:160]}") from None
    return vec


def _onnx_prop(path: Path, key: str) -> str | None:
    """One ``metadata_props`` entry; through ONNX Runtime on a device without ``onnx``."""
    try:
        import onnx
    except ImportError:
        import onnxruntime as ort

        try:
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ExportError(f"cannot read ONNX file {path}: {str(exc).splitlines()[0][:120]}") from None
        return sess.get_modelmeta().custom_metadata_map.get(key)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ExportError(f"cannot read ONNX file {path}: corrupt or truncated "
                          f"({str(exc).splitlines()[0][:120]})") from None
    return next((p.value for p in proto.metadata_props if p.key == key), None)


def binding_problems(artifact, vectors: dict) -> list[str]:
    """Files next to a sidecar-format artifact that are not the ones its vectors were made for."""
    bound = vectors.get("bound_to") or {}
    problems = []
    folder = Path(artifact).parent
    for name, digest in sorted(bound.items()):
        f = folder / name
        if not f.exists():
            problems.append(f"{name} (which the vectors were made with) is missing")
        else:
            if sha256_file(f) != digest:
                problems.append(f"{name} is not the file these vectors were made for (sha256 differs)")
    return problems


# -- judging --------------------------------------------------------------------------
def judge(vectors: dict, logits: np.ndarray) -> dict:
    """Per-vector and set verdicts of ``logits`` against the vectors' expected logits.

    Per vector: max |diff| / max |expected| and cosine, against the profile's
    ``max_rel_error`` / ``min_cosine`` where the profile sets them; over the
    set: mean cosine and top-1 agreement (observed values: a handful of
    vectors is a self-check, not a sample to draw intervals from; parity
    at export judged the full val split).
    """
    ref = decode_logits(vectors).astype(np.float64)
    out = np.asarray(logits, np.float64).reshape(ref.shape)
    tol = vectors.get("tolerances") or {}
    rows, cosines, same = [], [], []
    for i, (r, y) in enumerate(zip(ref, out)):
        rel = float(np.abs(y - r).max() / max(float(np.abs(r).max()), 1e-30))
        denom = float(np.linalg.norm(r) * np.linalg.norm(y))
        cos = float(np.dot(r, y) / denom) if denom > 0 else 0.0
        top1 = bool(np.argmax(r) == np.argmax(y))
        failed = []
        if not np.all(np.isfinite(y)):
            failed.append("non-finite logits")
        if tol.get("max_rel_error") is not None and not rel <= tol["max_rel_error"]:
            failed.append(f"relative error {rel:.3g} > {tol['max_rel_error']:g}")
        if tol.get("min_cosine") is not None and not cos >= tol["min_cosine"]:
            failed.append(f"cosine {cos:.6f} < {tol['min_cosine']:g}")
        cosines.append(cos)
        same.append(top1)
        rows.append({"vector": vectors["vectors"][i].get("id", str(i)), "max_rel_error": rel,
                     "cosine": cos, "top1_same": top1, "expected_top1": int(np.argmax(r)),
                     "top1": int(np.argmax(y)), "verdict": "FAIL" if failed else "PASS",
                     "why": "; ".join(failed)})
    set_checks = []
    values = {"min_mean_cosine": float(np.mean(cosines)), "min_top1_agreement": float(np.mean(same))}
    for gate in SET_GATES:
        if tol.get(gate) is not None:
            ok = values[gate] >= tol[gate] - 1e-9
            set_checks.append({"gate": gate, "threshold": tol[gate], "value": values[gate],
                               "verdict": "PASS" if ok else "FAIL"})
    passed = all(r["verdict"] == "PASS" for r in rows) and all(c["verdict"] == "PASS"
                                                               for c in set_checks)
    return {"verdict": "PASS" if passed else "FAIL", "vectors": rows, "set": set_checks,
            "profile": tol.get("profile")}


# -- building (export time) -------------------------------------------------------------
def _vector_images(ctx, count: int):
    """``(images (N,C,H,W) float32, ids, labels, description)`` from the val split."""
    src = ctx.source
    pre = src.preprocess
    transform = EvalTransform(src.image_size, pre["crop_pct"], tuple(pre["mean"]),
                              tuple(pre["std"]), pre["interpolation"])
    data, stand_in_why = _val_source(ctx)
    if data is None:
        photos = sample_photos()[:count]
        images = [transform(img) for _, img in photos]
        ids, labels = [f"photos/{n}" for n, _ in photos], [None] * len(photos)
        desc = {"source": "stand-in photos shipped with scikit-learn/scikit-image",
                "stand_in": True, "reason": stand_in_why}
    else:
        source, where, split = data
        order = stratified_order(source.targets, seed=0)[:count]
        images = [transform(source.load(int(i))) for i in order]
        files = getattr(source, "files", None)
        ids = [str(Path(files[i]).name) if files is not None else f"{split}/{int(i)}" for i in order]
        labels = [int(source.targets[i]) for i in order]
        desc = {"source": where, "stand_in": False}
    x = np.stack(images).astype(np.float32)
    if src.in_channels == 1:
        x = x.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(x), ids, labels, desc


def _val_source(ctx):
    """``((source, description), "")`` for the val split ``ctx.val_data`` or the checkpoint names."""
    spec = getattr(ctx, "val_data", None) or (ctx.source.checkpoint_meta.get("recipe") or {})
    name = str(spec.get("dataset") or "")
    if not name:
        return None, "no val split is known for this checkpoint"
    split = spec.get("val_split") or "val"
    view = {"dataset": name, "data_dir": spec.get("data_dir"),
            "image_resize": int(ctx.source.image_size), "dataset_download": False}
    try:
        source = open_source(view, split)
    except (ShuffleNetError, OSError, TypeError, KeyError) as exc:
        return None, f"val split {split!r} of {spec.get('data_dir') or name} not reachable: {exc}"
    where = "demo digits" if name.lower() == "demo" else str(spec.get("data_dir"))
    return (source, f"{where} (split {split})", split), ""


def _reference(ctx, count: int) -> dict:
    """The vectors of this export (the same for every format): built once, cached on ctx."""
    cache = getattr(ctx, "_vectors_cache", None)
    if cache is None:
        x, ids, labels, desc = _vector_images(ctx, count)
        logits = run_mindspore(ctx.source.net, x)
        cache = {"x": x, "logits": np.asarray(logits, np.float32), "ids": ids, "labels": labels,
                 "desc": desc}
        ctx._vectors_cache = cache
    return cache


def build_vectors(ctx, precision: str, count: int = DEFAULT_COUNT,
                  budget_bytes: int = BUDGET_BYTES) -> dict:
    """The vectors document of one artifact (without ``bound_to``)."""
    ref = _reference(ctx, count)
    pre = ctx.source.preprocess
    name, thresholds = tolerances_for(precision)
    tol = {"profile": name, **{g: thresholds.get(g)
                                       for g in PER_VECTOR_GATES + SET_GATES}}
    rows, spec, used = [], None, 0
    for i in range(len(ref["x"])):
        data, spec = _encode_input(ref["x"][i], pre["mean"], pre["std"])
        row = {"id": ref["ids"][i], "label": ref["labels"][i],
               "input_sha256": hashlib.sha256(_unb64(data)).hexdigest()[:16], "input": data,
               "logits": _b64(np.ascontiguousarray(ref["logits"][i], "<f4").tobytes())}
        size = len(json.dumps(row))
        if rows and used + size > budget_bytes:
            break
        rows.append(row)
        used += size
    return {"schema": SCHEMA, "count": len(rows), "input": spec, "vectors": rows,
            "logits": "float32-le", "tolerances": tol, **ref["desc"],
            "reference": {"checkpoint_sha256": ctx.source.sha256,
                          "engine": "mindspore " + str(package_versions(("mindspore",))
                                                       .get("mindspore"))},
            "budget_bytes": budget_bytes}


def attach_vectors(ctx, fmt: str, built) -> list:
    """Write the vectors into a staged artifact; returns its file list (before any digest).

    ONNX: re-saved with the vectors in ``metadata_props``; other formats: a
    ``.vectors.json`` sidecar bound to the staged files, appended to the list.
    """
    path = Path(built.files[0])
    model_bytes = sum(Path(f).stat().st_size for f in built.files)
    vec = build_vectors(ctx, FORMATS[fmt].precision,
                        budget_bytes=max(BUDGET_BYTES, int(BUDGET_SHARE * model_bytes)))
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        keep = [p for p in model.metadata_props if p.key != ONNX_VECTORS_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_VECTORS_KEY, json.dumps(vec, sort_keys=True)
        atomic_write(path, lambda tmp: onnx.save_model(model, str(tmp)))
        return list(built.files)
    vec["bound_to"] = {Path(f).name: sha256_file(f) for f in built.files}
    side = vectors_path(path)
    text = json.dumps(vec, sort_keys=True)
    atomic_write(side, lambda tmp: Path(tmp).write_text(text))
    return list(built.files) + [side]


# -- checking (on a device: verify, and bench before it times) ------------------------
_LOOSENESS = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}


def _tolerances(precision: str) -> dict:
    """The vectors' tolerances under another precision profile (a target running fp16)."""
    name, thresholds = tolerances_for(precision)
    return {"profile": name, **{g: thresholds.get(g)
                                       for g in PER_VECTOR_GATES + SET_GATES}}


def bound_vectors(art) -> dict:
    """The vectors ``art`` carries, checked to belong to its files (:class:`VerifyFailed` if not;
    :class:`~shufflenet.errors.ExportError` when it carries none)."""
    vectors = read_vectors(art.path)
    problems = binding_problems(art.path, vectors)
    if problems:
        raise VerifyFailed(f"{art.name}: test vectors do not belong to these files: {problems[0]}")
    return vectors


def run_vectors(art, vectors: dict, runner, target=None) -> dict:
    """``vectors`` through an active ``runner`` of ``art``, judged by the artifact's precision
    profile (a target running the file in lower precision, by its own): verify's check, and
    the bench's check before it times anything (no latency without correctness)."""
    x = decode_inputs(vectors, art.metadata)
    logits = runner.infer(x)   # a fixed-batch artifact is padded by Runner.infer
    stored = (vectors.get("tolerances") or {}).get("profile")
    if target is not None and _LOOSENESS.get(target.precision, 0) > _LOOSENESS.get(stored, 0):
        # a target that runs an fp32 file in lower precision (ncnn fp16) is judged by its own
        vectors = dict(vectors, tolerances=_tolerances(target.precision))
    result = judge(vectors, logits)
    device = dict(getattr(runner, "device", None) or {})
    result.update(artifact=str(art.path), format=art.format, precision=art.precision,
                  engine=runner.info().engine, engine_version=runner.info().engine_version,
                  device=device, ran_on=device.get("where"),
                  source=vectors.get("source"), stand_in=bool(vectors.get("stand_in")),
                  count=len(x))
    return result
