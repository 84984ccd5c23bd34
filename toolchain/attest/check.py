"""Run an artifact's bundled test vectors on a device: ``shufflenet verify``'s self-check.

No MindSpore and no checkpoint: the vectors carry the checkpoint's logits
and the tolerances of the artifact's precision profile
(:mod:`exporters.vectors`). The artifact runs on the target's device
(this machine by default; ``emu:arm64``, ``ssh://``) through the device
layer that parity and bench use; every device access is in
:func:`_open_on_device`.

>>> report = check_vectors("runs/demo/artifacts/shufflenet_v2_x0_5.onnx")   # doctest: +SKIP
>>> report["verdict"], report["seconds"]                                     # doctest: +SKIP
('PASS', 0.4)
"""
from __future__ import annotations

import contextlib
import time

import numpy as np

from exporters.smoke import SMOKE_ENGINES, quiet_stdout
from exporters.vectors import (
    PER_VECTOR_GATES,
    SET_GATES,
    binding_problems,
    decode_inputs,
    judge,
    read_vectors,
)
from runtimes import create_runner
from runtimes.devices import DeviceRunner, device_for, device_for_target
from shufflenet.artifact import resolve_artifact
from shufflenet.errors import ConfigError
from toolchain.parity.profiles import profile_for_precision

from .errors import VerifyFailed


def _open_on_device(where: str, artifact, engine: str, threads: int | None, options: dict):
    """A (not yet active) runner for ``artifact`` on ``where`` (``local``, ``emu:arm64``,
    ``ssh://...`` or a :class:`runtimes.targets.Target`'s device): the one place verify
    reaches a device."""
    if where in (None, "", "local"):
        return create_runner(engine, artifact, threads=threads, **options)
    device = device_for(where) if isinstance(where, str) else device_for_target(where)
    return DeviceRunner(device, engine, artifact, threads=threads, **options)


def _plan(art, target=None, where: str | None = None):
    """``(where, engine, threads, options, label)`` for the artifact on a target or a place."""
    if target is None:
        engine = SMOKE_ENGINES.get(art.format)
        if engine is None:
            raise ConfigError(f"no engine is known for a {art.format!r} artifact")
        return where or "local", engine, 1, {}, where or "local"
    if target.format and target.format != art.format:
        raise ConfigError(f"target {target.name} runs {target.format} artifacts; "
                          f"{art.name} is {art.format}")
    place = where or (target if target.where != "local" else "local")
    label = where or target.where
    return place, target.engine, target.threads, dict(target.options), f"{target.name} @ {label}"


_LOOSENESS = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}


def _tolerances(precision: str) -> dict:
    """The vectors' tolerances under another precision profile (a target running fp16)."""
    profile = profile_for_precision(precision)
    return {"profile": profile.name, **{g: profile.thresholds.get(g)
                                       for g in PER_VECTOR_GATES + SET_GATES}}


def _batches(x: np.ndarray, fixed: int | None):
    """Chunks of ``x`` an artifact with a baked batch size takes (last one padded)."""
    if not fixed or fixed < 1:
        yield x, len(x)
        return
    for start in range(0, len(x), fixed):
        chunk = x[start:start + fixed]
        n = len(chunk)
        if n < fixed:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - n, axis=0)])
        yield chunk, n


def check_vectors(artifact, target=None, where: str | None = None) -> dict:
    """Run the vectors of ``artifact`` on ``target`` (or ``where``, default this machine).

    Returns ``{"verdict", "vectors", "set", "ran_on", "engine", "seconds", ...}``.
    Raises :class:`VerifyFailed` (one line) when the vectors cannot be trusted
    to describe this file (a sidecar made for other files); a FAIL of the
    numbers is a verdict, not an exception.
    """
    start = time.perf_counter()
    art = resolve_artifact(artifact)
    vectors = read_vectors(art.path)
    problems = binding_problems(art.path, vectors)
    if problems:
        raise VerifyFailed(f"{art.name}: test vectors do not belong to these files: {problems[0]}")
    x = decode_inputs(vectors, art.metadata)
    place, engine, threads, options, label = _plan(art, target, where)
    shape = art.metadata.get("input_shape") or [-1]
    fixed = int(shape[0]) if int(shape[0]) > 0 else None
    outs, device = [], {}
    with contextlib.ExitStack() as stack:
        if place == "local":   # engines that print on fd 1 (MNN) must not break --json
            stack.enter_context(quiet_stdout())
        runner = stack.enter_context(_open_on_device(place, art, engine, threads, options))
        for chunk, n in _batches(x, fixed):
            outs.append(runner.infer(chunk)[:n])
        device = dict(getattr(runner, "device", None) or {})
        info = runner.info()
    stored = (vectors.get("tolerances") or {}).get("profile")
    if target is not None and _LOOSENESS.get(target.precision, 0) > _LOOSENESS.get(stored, 0):
        # a target that runs an fp32 file in lower precision (ncnn fp16) is judged by its own
        vectors = dict(vectors, tolerances=_tolerances(target.precision))
    result = judge(vectors, np.concatenate(outs))
    result.update(artifact=str(art.path), format=art.format, precision=art.precision,
                  engine=engine, engine_version=info.engine_version,
                  ran_on=device.get("where") or label, device=device,
                  source=vectors.get("source"), stand_in=bool(vectors.get("stand_in")),
                  count=len(x), seconds=round(time.perf_counter() - start, 3))
    return result
