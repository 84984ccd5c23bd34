"""Installed versions of the libraries that shape a result (for records and metadata)."""
from __future__ import annotations

import importlib.metadata
from typing import Iterable


def package_versions(distributions: Iterable[str]) -> dict:
    """``{distribution: version}`` for those installed; absent ones are left out."""
    out = {}
    for dist in distributions:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
