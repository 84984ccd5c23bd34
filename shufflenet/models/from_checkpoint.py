"""A network of the zoo built from a checkpoint: the one rule every checkpoint reader uses.

Validate, the exporters, the MindSpore reference runner and parity all turn a
``.ckpt`` into an eval-mode network here; :mod:`shufflenet.checkpoint` is the
file format below it (read, write, adapt a parameter dict), which the zoo's
builders use to load published weights.

>>> ev = load_eval_network("best.ckpt")          # doctest: +SKIP
>>> ev.model, ev.num_classes                       # doctest: +SKIP
('shufflenet_v2_x0_5', 10)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import as_numpy, load_into, read_checkpoint
from ..errors import CheckpointError
from ..quant import qat_network
from .registry import create_model, resolve_model_name

__all__ = ["EvalNetwork", "load_eval_network", "resolve_architecture"]


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
    name = _agree(meta, "model", resolve_model_name(model) if model else None, path)
    if not name:
        raise CheckpointError(f"checkpoint {Path(path).name} does not say which model it is: "
                              "pass --model")
    name = resolve_model_name(name)
    n_cls = _agree(meta, "num_classes", num_classes, path)
    classifier = state.get("classifier.weight")
    rows = None if classifier is None else int(np.shape(as_numpy(classifier))[0])
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
    state, meta = read_checkpoint(checkpoint)
    name, n_cls, in_ch = resolve_architecture(meta, state, checkpoint, model, num_classes)
    if "qat" in meta:  # quantization-aware fine-tuned: the fake-quant int8 network it trained
        net = qat_network(meta["qat"], state)
    else:
        net = create_model(name, num_classes=n_cls, in_channels=in_ch)
        load_into(net, state, source=f"checkpoint {checkpoint}")
    net.set_train(False)
    return EvalNetwork(net, name, n_cls, in_ch, meta)
