"""Run one target on one artifact: the target's device opens the runner, the runner measures."""
from __future__ import annotations

import numpy as np

from runtimes.devices import device_for_target
from runtimes.measure import LatencyResult
from runtimes.plan import check_compatible
from shufflenet.data.preprocess import EvalTransform, sample_photos

from .latency import measured_on


def input_batch(meta: dict, batch: int) -> np.ndarray:
    """``batch`` real photos through the artifact's own eval preprocessing (NCHW float32)."""
    photos = sample_photos()
    return EvalTransform.from_metadata(meta).batch(
        [photos[i % len(photos)][1] for i in range(batch)], (meta.get("input_shape") or [0, 3])[1])


def bench_target(artifact, target, progress=None, isolate: bool = True) -> LatencyResult:
    """Measure ``artifact`` (a resolved :class:`~shufflenet.artifact.Artifact`) on ``target``.

    The target's device (:func:`runtimes.devices.device_for_target`) opens the
    runner and the measurement runs beside it: a local target in a fresh
    Python process (``isolate=True``: the peak RSS is the engine's own, and
    thread or affinity settings never leak between targets) -- except the
    ``mindspore`` checkpoint engine, which runs in this process -- an ``emu:``
    or ``ssh://`` target in the device's agent. ``progress`` is an optional
    ``(phase, runs_done)`` callable.
    """
    art = check_compatible(artifact, target)
    batch = input_batch({**art.metadata, "image_size": art.image_size}, target.batch)
    device = device_for_target(target, in_process=not isolate)
    with device.open(target.engine, art, target.threads, dict(target.options),
                     affinity=target.affinity) as runner:
        result = runner.latency(batch, target.policy(), progress)
    result.measured_on = measured_on(result.fingerprint, target.where)
    result.target = target.name
    return result
