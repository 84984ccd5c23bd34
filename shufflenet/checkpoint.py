"""Checkpoints: atomic save with metadata, safe load, adaptation, pretrained weights.

Metadata (epoch, step, recipe, metrics, data fingerprint, model name, ...)
travels *inside* the ``.ckpt`` file as one JSON string under
``__toolchain_meta__``; nothing is ever parsed from a file name.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .download import cache_dir, download  # noqa: F401  (old import path)
from .errors import CheckpointError
from .fileio import atomic_write, sha256_file  # noqa: F401  (old import path)

log = logging.getLogger(__name__)

META_KEY = "__toolchain_meta__"
# Keys MindSpore's own training loop stores next to the weights.
_BOOKKEEPING = {"epoch_num", "step_num", "global_step", "learning_rate", "loss_scale",
                "current_iterator_step", "last_overflow_iterator_step", "scale_sense",
                "momentum"}  # nn.Momentum/nn.SGD keep their momentum scalar as a Parameter
# Prefixes under which optimizers keep per-parameter state.
OPTIMIZER_PREFIXES = ("moments.", "momentum.", "adam_m.", "adam_v.", "moment1.", "moment2.",
                      "accum.", "stat.", "beta1_power", "beta2_power")


def save_checkpoint(params, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Atomically save a Cell or a list of ``{"name", "data"}`` dicts with metadata."""
    import mindspore as ms

    append = {META_KEY: json.dumps(metadata or {}, sort_keys=True, default=str)}

    def write(tmp):
        # MindSpore appends ".ckpt" to a file name that lacks it; write there, then move.
        target = tmp if str(tmp).endswith(".ckpt") else str(tmp) + ".ckpt"
        # crc_check: a CRC32 over the file, verified by read_checkpoint, so a flipped bit in the
        # weights is an error rather than a network that loads and is silently wrong
        ms.save_checkpoint(params, target, append_dict=append, crc_check=True)
        if target != str(tmp):
            os.replace(target, tmp)

    return atomic_write(path, write)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict]:
    """Return ``(parameter dict, metadata)``; clear errors for bad files."""
    import mindspore as ms

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, expected a .ckpt file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint is empty (0 bytes): {path}")
    try:
        # crc_check verifies the CRC32 our checkpoints carry (files without one, e.g. MindCV's
        # published weights, still load)
        raw = ms.load_checkpoint(str(path), crc_check=True)
    except Exception as exc:  # MindSpore raises ValueError/RuntimeError for bad protobuf
        raise CheckpointError(
            f"cannot read checkpoint {path}: corrupt or truncated file, or its CRC32 does not match "
            f"({str(exc).splitlines()[0][:160]})") from None
    meta: dict[str, Any] = {}
    text = raw.pop(META_KEY, None)
    if isinstance(text, str):
        try:
            meta = json.loads(text)
        except json.JSONDecodeError:
            log.warning("checkpoint %s has unreadable metadata; ignoring it", path)
    params = {k: v for k, v in raw.items() if not isinstance(v, str)}
    if not params:
        raise CheckpointError(f"checkpoint {path} holds no parameters")
    return params, meta


def read_metadata(path: str | os.PathLike) -> dict:
    return read_checkpoint(path)[1]


def _as_numpy(value) -> np.ndarray:
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


def adapt_state_dict(state: dict, model, source: str = "checkpoint") -> tuple[dict, list[str]]:
    """Make a MindCV/ours parameter dict fit ``model``; return (dict, notes).

    * classifier of another class count -> dropped (with optimizer copies);
    * 3-channel stem into a 1-channel model -> summed over input channels;
    * anything else that does not fit -> :class:`CheckpointError` naming it.
    """
    notes: list[str] = []
    weights = {k: v for k, v in state.items()
               if k not in _BOOKKEEPING and not k.startswith(OPTIMIZER_PREFIXES)}
    own = {p.name: tuple(p.shape) for p in model.get_parameters()}
    cls_prefix = f"{model.default_cfg.classifier}." if hasattr(model, "default_cfg") else "classifier."
    first_conv = (f"{model.default_cfg.first_conv}.weight"
                  if hasattr(model, "default_cfg") else "first_conv.0.weight")

    cls_keys = [k for k in weights if k.startswith(cls_prefix)]
    for k in cls_keys:
        if k not in own or tuple(_as_numpy(weights[k]).shape) != own[k]:
            weights.pop(k)
            if f"dropped:{cls_prefix}" not in notes:
                shape = tuple(_as_numpy(state[k]).shape)
                notes.append(f"dropped:{cls_prefix}")
                log.warning("%s classifier %s has shape %s but the model wants %s: "
                            "dropping it (and its optimizer state); the head starts fresh",
                            source, k, shape, own.get(k))

    if first_conv in weights and first_conv in own:
        w = _as_numpy(weights[first_conv])
        want = own[first_conv]
        if w.shape != want and w.ndim == 4 and w.shape[0] == want[0] and w.shape[2:] == want[2:]:
            if want[1] == 1:
                weights[first_conv] = w.sum(axis=1, keepdims=True).astype(w.dtype)
                notes.append("summed first conv over input channels")
                log.warning("%s stem conv has %d input channels; summing to 1", source, w.shape[1])
            else:
                raise CheckpointError(
                    f"{source} stem conv {first_conv} takes {w.shape[1]} input channels but the "
                    f"model takes {want[1]}; only 3 -> 1 can be adapted (use in_channels=1 or 3)")

    missing = sorted(k for k in own if k not in weights and not k.startswith(cls_prefix))
    unexpected = sorted(k for k in weights if k not in own)
    wrong = sorted(k for k in weights if k in own and tuple(_as_numpy(weights[k]).shape) != own[k])
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape mismatch: " + ", ".join(
                f"{k} {tuple(_as_numpy(weights[k]).shape)} vs {own[k]}" for k in wrong[:4])
                + (f" (+{len(wrong) - 4} more)" if len(wrong) > 4 else ""))
        if missing:
            parts.append("missing: " + ", ".join(missing[:4])
                         + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""))
        if unexpected:
            parts.append("unexpected: " + ", ".join(unexpected[:4])
                         + (f" (+{len(unexpected) - 4} more)" if len(unexpected) > 4 else ""))
        name = getattr(model, "model_name", type(model).__name__)
        raise CheckpointError(f"{source} does not fit {name}: " + "; ".join(parts)
                              + " -- is it a checkpoint of another model or width?")
    return weights, notes


def load_into(model, state: dict, source: str = "checkpoint") -> list[str]:
    """Adapt ``state`` to ``model`` and load it; returns adaptation notes."""
    import mindspore as ms

    weights, notes = adapt_state_dict(state, model, source)
    params = {k: ms.Parameter(ms.Tensor(_as_numpy(v)), name=k) for k, v in weights.items()}
    not_loaded, _ = ms.load_param_into_net(model, params, strict_load=True)
    cls_prefix = "classifier."
    leftover = [k for k in not_loaded if not k.startswith(cls_prefix)]
    if leftover:
        raise CheckpointError(f"{source}: parameters not loaded: {', '.join(leftover[:5])}")
    return notes


def load_checkpoint_file(model, path: str | os.PathLike) -> dict:
    """Load a ``.ckpt`` into ``model``; returns its metadata."""
    state, meta = read_checkpoint(path)
    try:
        load_into(model, state, source=f"checkpoint {path}")
    except CheckpointError as exc:
        theirs = meta.get("model")
        if theirs and theirs != getattr(model, "model_name", theirs):
            raise CheckpointError(f"{exc} (its metadata says it is a {theirs})") from None
        raise
    return meta


@dataclass
class EvalNetwork:
    """A checkpoint's network in eval mode, with what it was resolved from."""

    net: Any
    model: str
    num_classes: int
    in_channels: int
    metadata: dict          # the checkpoint's own metadata, as stored


def _agree(meta: dict, key: str, given, path) -> Any:
    """Checkpoint metadata wins; an explicit value that contradicts it is an error."""
    have = meta.get(key)
    if have is not None and given is not None and str(have) != str(given):
        raise CheckpointError(
            f"--{key} {given} does not match the checkpoint {Path(path).name}, whose metadata "
            f"says {key}={have}; drop the option or pass the right checkpoint")
    return have if have is not None else given


def resolve_architecture(meta: dict, state: dict, path, model: str | None = None,
                         num_classes: int | None = None) -> tuple[str, int, int]:
    """``(model, num_classes, in_channels)`` of a checkpoint: the one rule every reader uses.

    Model: metadata, else ``model``. Class count: metadata, else ``num_classes``,
    else the classifier's own shape; never a default (a 1000-class guess only
    moves the error to a shape mismatch, or hides it). A given value that
    contradicts the metadata or the classifier is a :class:`CheckpointError`.
    """
    from .models import resolve_model_name

    name = _agree(meta, "model", resolve_model_name(model) if model else None, path)
    if not name:
        raise CheckpointError(f"checkpoint {Path(path).name} does not say which model it is: "
                              "pass --model")
    name = resolve_model_name(name)
    n_cls = _agree(meta, "num_classes", num_classes, path)
    classifier = state.get("classifier.weight")
    rows = None if classifier is None else int(np.shape(_as_numpy(classifier))[0])
    if n_cls is None:
        if rows is None:
            raise CheckpointError(f"cannot tell the class count of {Path(path).name}: "
                                  "pass --num_classes")
        n_cls = rows
    elif rows is not None and rows != int(n_cls):
        raise CheckpointError(f"--num_classes {n_cls} does not match the checkpoint "
                              f"{Path(path).name}, whose classifier has {rows} outputs")
    return name, int(n_cls), int(meta.get("in_channels") or 3)


def load_eval_network(checkpoint: str | os.PathLike, model: str | None = None,
                      num_classes: int | None = None) -> EvalNetwork:
    """Checkpoint -> network in eval mode (validate, exporters, the MindSpore runner, parity).

    >>> ev = load_eval_network("best.ckpt")          # doctest: +SKIP
    >>> ev.model, ev.num_classes                       # doctest: +SKIP
    ('shufflenet_v2_x0_5', 10)
    """
    from .models import create_model

    state, meta = read_checkpoint(checkpoint)
    name, n_cls, in_ch = resolve_architecture(meta, state, checkpoint, model, num_classes)
    if "qat" in meta:  # quantization-aware fine-tuned: the fake-quant int8 network
        from .quant import qat_network

        net = qat_network(meta["qat"], state)
        net.set_train(False)
        return EvalNetwork(net, name, n_cls, in_ch, meta)
    net = create_model(name, num_classes=n_cls, in_channels=in_ch)
    load_into(net, state, source=f"checkpoint {checkpoint}")
    net.set_train(False)
    return EvalNetwork(net, name, n_cls, in_ch, meta)


def load_pretrained(model, cfg, checkpoint_path: str | None = None) -> dict:
    """Load weights from ``checkpoint_path`` or the variant's published URL."""
    if checkpoint_path:
        return load_checkpoint_file(model, checkpoint_path)
    if not cfg.url:
        raise CheckpointError(f"{cfg.name} has no published weights; pass --ckpt_path")
    path = download(cfg.url, cfg.sha256_prefix)
    return load_checkpoint_file(model, path)


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    return atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))
