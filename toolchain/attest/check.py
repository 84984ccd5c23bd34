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

from exporters.smoke import SMOKE_ENGINES, quiet_stdout
from exporters.vectors import bound_vectors, run_vectors
from runtimes.devices import device_for, device_for_target
from shufflenet.artifact import resolve_artifact
from shufflenet.errors import ConfigError


def _open_on_device(where, artifact, engine: str, threads: int | None, options: dict):
    """A runner for ``artifact`` on ``where`` (``local``, ``emu:arm64``, ``ssh://...``, or a
    :class:`runtimes.targets.Target`): the device layer's one ``open``, as parity and bench
    reach a device. This machine runs the engine in this process (no agent start-up)."""
    if isinstance(where, str) or where is None:
        device = device_for(where or "local", in_process=where in (None, "", "local"))
    else:
        device = device_for_target(where, in_process=where.where in (None, "", "local"))
    return device.open(engine, artifact, threads, options)


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


def check_vectors(artifact, target=None, where: str | None = None) -> dict:
    """Run the vectors of ``artifact`` on ``target`` (or ``where``, default this machine).

    Returns ``{"verdict", "vectors", "set", "ran_on", "engine", "seconds", ...}``.
    Raises :class:`VerifyFailed` (one line) when the vectors cannot be trusted
    to describe this file (a sidecar made for other files); a FAIL of the
    numbers is a verdict, not an exception.
    """
    start = time.perf_counter()
    art = resolve_artifact(artifact)
    vectors = bound_vectors(art)
    place, engine, threads, options, label = _plan(art, target, where)
    with contextlib.ExitStack() as stack:
        if place == "local":   # engines that print on fd 1 (MNN) must not break --json
            stack.enter_context(quiet_stdout())
        runner = stack.enter_context(_open_on_device(place, art, engine, threads, options))
        result = run_vectors(art, vectors, runner, target)
    where = result["device"].get("where")
    result.update(ran_on=label if where in (None, "", "local") else where,
                  seconds=round(time.perf_counter() - start, 3))
    return result
