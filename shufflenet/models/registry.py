"""Name -> builder registry for the model zoo."""
from __future__ import annotations

import difflib
import re
from typing import Callable

from ..errors import ConfigError

_BUILDERS: dict[str, Callable] = {}
_CONFIGS: dict = {}


def register_model(cfg):
    """Decorator: register a builder under its function name with its config."""

    def wrap(fn: Callable) -> Callable:
        name = fn.__name__
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = fn
        _CONFIGS[name] = cfg
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_BUILDERS)


def resolve_model_name(name: str) -> str:
    """Return ``name`` if registered, accepting MindCV's short forms, else raise.

    >>> resolve_model_name("shufflenet_v2_x1_0")
    'shufflenet_v2_x1_0'
    """
    if name in _BUILDERS:
        return name
    # MindCV habits: "x1_0", "1.0x", "shufflenet-v2-x1.0", "ShuffleNetV2_x1_0"
    key = re.sub(r"[^a-z0-9]", "", str(name).lower()).replace("shufflenetv2", "")
    key = key[:-1] if key.endswith("x") and not key.startswith("x") else key
    key = key if key.startswith("x") else "x" + key
    for n in _BUILDERS:
        if key == re.sub(r"[^a-z0-9]", "", n.replace("shufflenet_v2_", "")):
            return n
    close = difflib.get_close_matches(name, list(_BUILDERS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown model {name!r}{hint} (available: {', '.join(list_models())})")


def get_model_config(name: str):
    return _CONFIGS[resolve_model_name(name)]


def create_model(name: str, pretrained: bool = False, num_classes: int | None = 1000,
                 in_channels: int | None = 3, checkpoint_path: str | None = None, **kwargs):
    """Build a registered model; ``None`` keyword arguments are dropped.

    >>> net = create_model("shufflenet_v2_x0_5", num_classes=10)
    """
    name = resolve_model_name(name)
    args = dict(pretrained=pretrained, num_classes=num_classes, in_channels=in_channels,
                checkpoint_path=checkpoint_path, **kwargs)
    args = {k: v for k, v in args.items() if v is not None}
    try:
        return _BUILDERS[name](**args)
    except ValueError as exc:
        raise ConfigError(f"cannot build {name}: {exc}") from None
