"""Run one target on one artifact: the target's device opens the runner, the runner measures."""
from __future__ import annotations

import numpy as np

from exporters.vectors import bound_vectors, run_vectors
from runtimes.devices import device_for_target
from runtimes.measure import LatencyResult
from runtimes.plan import check_compatible
from shufflenet.data.preprocess import EvalTransform, sample_photos
from shufflenet.errors import ExportError, GateFailed

from .latency import measured_on


class WrongOnDevice(GateFailed):
    """The artifact's bundled test vectors FAIL on the target's device: it is not timed."""

    def __init__(self, message: str, check: dict):
        super().__init__(message)
        self.check = check


def _vectors_problem(check: dict) -> str:
    bad = [v for v in check["vectors"] if v["verdict"] != "PASS"]
    first = bad[0]["why"] if bad else next(c["gate"] for c in check["set"] if c["verdict"] != "PASS")
    return f"{len(bad)} of {len(check['vectors'])} test vectors FAIL ({first})"


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

    Before any timing the artifact's bundled test vectors run on the same
    runner; if they FAIL there, :class:`WrongOnDevice` is raised and nothing is
    timed (``result.vectors`` records the check otherwise).
    """
    art = check_compatible(artifact, target)
    batch = input_batch({**art.metadata, "image_size": art.image_size}, target.batch)
    try:
        vectors = bound_vectors(art)
    except ExportError:   # exported before artifacts carried vectors: timed, and said
        vectors = None
    device = device_for_target(target, in_process=not isolate)
    check = None
    with device.open(target.engine, art, target.threads, dict(target.options),
                     affinity=target.affinity) as runner:
        if vectors is not None:   # no latency without correctness, on this very runner
            check = run_vectors(art, vectors, runner, target)
            if check["verdict"] != "PASS":
                raise WrongOnDevice(f"{art.name} is wrong on target {target.name} "
                                    f"({check.get('ran_on') or target.where}): "
                                    f"{_vectors_problem(check)}; not timed", check)
        result = runner.latency(batch, target.policy(), progress)
    result.vectors = ({"verdict": check["verdict"], "count": check["count"]} if check
                      else {"verdict": "NOT CHECKED", "count": 0,
                            "reason": "the artifact carries no test vectors (re-export it)"})
    result.measured_on = measured_on(result.fingerprint, target.where)
    result.target = target.name
    return result
