"""Run one target on one artifact: compatibility checks, input, local or ssh."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from shufflenet.errors import ConfigError, RuntimeEngineError

from .latency import LatencyResult, measure_latency, measured_on


def check_compatible(artifact, target):
    """Raise a clear error unless ``target`` can run ``artifact``; return the resolved
    :class:`~shufflenet.artifact.Artifact`.

    Checks: the target's engine runs the artifact's format, the target's
    format (if set) and precision match the artifact's, the input size and a
    fixed batch agree. ``artifact`` is a path or an already resolved Artifact.
    """
    from runtimes import Artifact, get_engine, resolve_artifact

    if not isinstance(artifact, Artifact) and not Path(artifact).exists():
        raise ConfigError(f"artifact not found: {artifact}")
    art = resolve_artifact(artifact)
    fmt, precision, meta = art.format, art.precision, art.metadata
    engine = get_engine(target.engine)
    if fmt not in engine.formats:
        raise ConfigError(f"target {target.name!r} runs {engine.name}, which cannot run this "
                          f"{fmt!r} artifact ({Path(artifact).name}); it runs "
                          f"{', '.join(engine.formats)}")
    if target.format and fmt != target.format:
        raise ConfigError(f"target {target.name!r} expects a {target.format!r} artifact, "
                          f"{Path(artifact).name} is {fmt!r}")
    if precision != target.precision:
        raise ConfigError(f"precision mismatch: {Path(artifact).name} is {precision}, target "
                          f"{target.name!r} expects {target.precision}")
    size = int(meta.get("image_size") or 224)
    if target.input_size and target.input_size != size:
        raise ConfigError(f"target {target.name!r} wants {target.input_size} px input, the artifact "
                          f"takes {size} px; export at that size")
    shape = meta.get("input_shape") or [-1]
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if fixed and fixed != target.batch and engine.name != "ncnn":  # ncnn loops over the batch
        raise ConfigError(f"target {target.name!r} runs batch {target.batch}, the artifact has a "
                          f"fixed batch of {fixed}; export with a dynamic batch or batch {target.batch}")
    if target.is_remote and engine.name == "mindspore":
        raise ConfigError(f"target {target.name!r}: the mindspore checkpoint engine runs only "
                          "locally; export the checkpoint for a remote target")
    return art


def input_batch(meta: dict, batch: int) -> np.ndarray:
    """``batch`` real photos through the artifact's own eval preprocessing (NCHW float32)."""
    from shufflenet.data.preprocess import EvalTransform, sample_photos

    photos = sample_photos()
    return EvalTransform.from_metadata(meta).batch(
        [photos[i % len(photos)][1] for i in range(batch)], (meta.get("input_shape") or [0, 3])[1])


def bench_target(artifact, target, progress=None, isolate: bool = True) -> LatencyResult:
    """Measure ``artifact`` on ``target`` (here, or on its ssh host).

    Local targets run in a fresh Python process through :mod:`runtimes.agent`
    (``isolate=True``: the peak RSS is the engine's own, and thread or
    affinity settings never leak between targets), except the ``mindspore``
    checkpoint engine, which always runs in this process. ``progress`` is an
    optional ``(phase, runs_done)`` callable.
    """
    art = check_compatible(artifact, target)
    result = _bench(art, target, progress, isolate)
    result.measured_on = measured_on(result.fingerprint, target.where)
    result.artifact_info = {"name": art.name, "model": art.model, "image_size": art.image_size,
                            "format": art.format, "precision": art.precision}
    result.target = target.name
    return result


def _bench(art, target, progress, isolate: bool) -> LatencyResult:
    meta = {**art.metadata, "image_size": art.image_size}
    batch = input_batch(meta, target.batch)
    if target.is_remote:
        return _bench_remote(art, target, meta, batch, progress)
    from runtimes import ENGINES, agent, create_runner
    from runtimes._lazy import engine_installed, install_hint

    spec = ENGINES[target.engine]
    if not engine_installed(spec.module):
        raise RuntimeEngineError(f"target {target.name!r} needs engine {spec.name!r}, which is not "
                                 f"installed here (no Python module {spec.module!r}): "
                                 f"{install_hint(spec.extra)}")
    if isolate and target.engine != "mindspore":
        from runtimes.remote import run_local_agent

        res = run_local_agent(art.path, batch, _job(target, meta), progress)
        return LatencyResult.from_agent(res, str(art.path), art.precision, "local", target.name)

    runner = create_runner(target.engine, art, threads=target.threads, **dict(target.options))
    try:
        previous = agent.set_affinity(target.affinity)
    except OSError as exc:
        raise ConfigError(f"target {target.name!r}: cannot pin to CPUs {list(target.affinity)}: "
                          f"{exc.strerror}") from None
    try:
        result = measure_latency(runner, batch, target.policy(), progress)
    finally:
        runner.deactivate()
        if previous is not None:
            agent.set_affinity(previous)
    result.target = target.name
    return result


def _job(target, meta: dict) -> dict:
    """The agent job for ``target`` (paths are filled in by the caller)."""
    return {"engine": target.engine, "threads": target.threads,
            "affinity": list(target.affinity) if target.affinity else None,
            "options": dict(target.options), "layout": meta.get("layout", "NCHW"),
            "input_name": meta.get("input_name"), "output_name": meta.get("output_name"),
            "policy": target.policy()}


def _bench_remote(art, target, meta: dict, batch: np.ndarray, progress=None) -> LatencyResult:
    from runtimes.remote import SshHost, run_local_agent, run_remote

    if target.where.startswith("emu:"):  # qemu-user sees this machine's files: nothing to copy
        from runtimes.devices import device_for

        dev = device_for(target.where, cpu=target.cpu)
        res = run_local_agent(art.path, batch, _job(target, meta), progress, device=dev)
        return LatencyResult.from_agent(res, str(art.path), art.precision, dev.label(), target.name)
    host = SshHost(target.where, target.ssh)
    res = run_remote(host, list(art.files), batch, _job(target, meta), progress)
    return LatencyResult.from_agent(res, str(art.path), art.precision, target.where, target.name)
