"""The one target planner: which artifact each target runs, and why a target is left out.

``shufflenet bench``, ``shufflenet parity --target``, the pipeline's bench
stage and its device-parity half all choose with :func:`plan`, so the parity
on a target's device checks the very file its latency is measured on.

A target runs an artifact when its engine runs the artifact's format, its
``format`` (if set) and ``precision`` equal the artifact's own -- read from
the artifact's metadata, i.e. what the file *is*, not what its export format
is usually called -- and its input size and (when measuring) fixed batch
agree. Among several that fit, the engine's own format comes first (OpenVINO
IR before ONNX), then the engine's listed order.

>>> pairs, skipped = plan(targets, [resolve_artifact(p) for p in paths])   # doctest: +SKIP
>>> [(t.name, a.name) for t, a in pairs], skipped
([('x86-edge-ort-1t', 'm.onnx')], [('arm-phone-bigcore-mnn-1t', 'no mnn fp32 artifact ...')])
"""
from __future__ import annotations

from shufflenet.artifact import Artifact
from shufflenet.errors import ConfigError

from . import ENGINES, available_engines, get_engine
from ._lazy import not_installed

__all__ = ["check_compatible", "plan"]


def check_compatible(art: Artifact, target, measuring: bool = True) -> Artifact:
    """``art`` when ``target`` can run it, else a :class:`ConfigError` saying why.

    Checks: the target's engine runs the artifact's format, the target's
    format (if set) and precision match the artifact's, the input size agrees,
    and (``measuring``) a fixed batch equals the target's batch.
    """
    name, fmt = art.name, art.format
    engine = get_engine(target.engine)
    if fmt not in engine.formats:
        raise ConfigError(f"target {target.name!r} runs {engine.name}, which cannot run this "
                          f"{fmt!r} artifact ({name}); it runs {', '.join(engine.formats)}")
    if target.format and fmt != target.format:
        raise ConfigError(f"target {target.name!r} expects a {target.format!r} artifact, "
                          f"{name} is {fmt!r}")
    if art.precision != target.precision:
        raise ConfigError(f"precision mismatch: {name} is {art.precision}, target "
                          f"{target.name!r} expects {target.precision}")
    if target.input_size and target.input_size != art.image_size:
        raise ConfigError(f"target {target.name!r} wants {target.input_size} px input, the artifact "
                          f"takes {art.image_size} px; export at that size")
    shape = art.metadata.get("input_shape") or [-1]
    fixed = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    if measuring and fixed and fixed != target.batch and engine.name != "ncnn":  # ncnn loops
        raise ConfigError(f"target {target.name!r} runs batch {target.batch}, the artifact has a "
                          f"fixed batch of {fixed}; export with a dynamic batch or batch {target.batch}")
    if target.is_remote and engine.name == "mindspore":
        raise ConfigError(f"target {target.name!r}: the mindspore checkpoint engine runs only "
                          "locally; export the checkpoint for a remote target")
    return art


def plan(targets, artifacts: list[Artifact], installed=None, measuring: bool = True,
         exported: bool = False) -> tuple[list, list]:
    """``([(target, artifact)], [(target, reason)])``: what each target runs, and each left out.

    ``installed``: the engines installed here (default: found now); a local
    target whose engine is missing is left out, a remote one's engine is the
    device's business. ``exported``: the artifacts are a run's exports, so a
    missing one is named as an export to add (``--formats``); otherwise they
    are the user's files and the reason is the best candidate's
    :func:`check_compatible` message.
    """
    installed = set(available_engines() if installed is None else installed)
    pairs, skipped = [], []
    for t in targets:
        spec = get_engine(t.engine)
        if not t.is_remote and t.engine not in installed:
            skipped.append((t, not_installed(spec.name, spec.module, spec.extra)))
            continue
        art, why = _artifact_for(t, artifacts, measuring, exported)
        if art is None:
            skipped.append((t, why))
        else:
            pairs.append((t, art))
    return pairs, skipped


def _artifact_for(t, artifacts: list, measuring: bool, exported: bool):
    """``(artifact, None)`` or ``(None, reason)``; the engine's preferred format first."""
    order = [t.format] if t.format else list(ENGINES[t.engine].formats)
    rank = {fmt: i for i, fmt in enumerate(order)}
    ranked = sorted(artifacts, key=lambda a: rank.get(a.format, len(order)))
    if exported:
        runnable = [a for a in ranked if a.format in rank]
        ranked = [a for a in runnable if a.precision == t.precision]
        if t.format and runnable and not ranked:
            return None, (f"target {t.name!r} runs a {t.format} {t.precision} artifact, the "
                          f"exported {t.format} is {runnable[0].precision}; fix the target's "
                          "format or precision")
        if not ranked:
            return None, f"no {t.format or t.engine} {t.precision} artifact was exported (--formats)"
    errors = []
    for a in ranked:
        try:
            return check_compatible(a, t, measuring), None
        except ConfigError as exc:
            errors.append(str(exc))
    return None, errors[0] if errors else "no artifact given"
