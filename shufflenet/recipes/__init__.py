"""Training recipes shipped with the package (YAML, MindCV key names).

``shufflenet_v2_{0.5,1.0,1.5,2.0}_ascend`` equal MindCV's ImageNet recipes;
``demo`` trains x0_5 on the built-in digits set on a laptop CPU.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path

from ..errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parent


def list_recipes() -> list[str]:
    """Names of the shipped recipes (file names without ``.yaml``)."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))


def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a recipe name (``demo``, ``shufflenet_v2_1.0_ascend``) or a YAML path."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    stem = text[:-5] if text.endswith((".yaml", ".yml")) and "/" not in text else text
    shipped = RECIPE_DIR / f"{stem}.yaml"
    if "/" not in text and shipped.is_file():
        return shipped
    if path.exists():
        raise ConfigError(f"recipe {text} is not a file")
    near = difflib.get_close_matches(stem, list_recipes(), n=1, cutoff=0.4)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ConfigError(f"recipe {text!r} not found: neither a YAML file nor a shipped recipe{hint} "
                      f"(shipped: {', '.join(list_recipes())})")


def load_recipe(name_or_path: str | os.PathLike) -> dict:
    """Read a recipe into a flat dict of options (keys unchanged)."""
    import yaml

    path = recipe_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of option: value")
    flat = {}
    for key, value in data.items():
        # MindCV also accepts recipes grouped in sections; flatten one level.
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat
