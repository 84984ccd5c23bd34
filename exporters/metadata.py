"""Writing the metadata every exported artifact carries.

The contract itself (fields, ONNX key, sidecar naming, reading) lives below
both its writers and its readers, in :mod:`shufflenet.artifact`; this module
writes it and re-exports the reading side for the exporters.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from shufflenet.artifact import (  # noqa: F401
    ONNX_KEY,
    REQUIRED_FIELDS,
    SCHEMA_VERSION,
    SIDECAR_SUFFIX,
    read_artifact_metadata,
    sidecar_path,
)
from shufflenet.fileio import atomic_write


def write_sidecar(artifact: str | os.PathLike, meta: dict) -> Path:
    text = json.dumps(meta, indent=2, sort_keys=True)
    return atomic_write(sidecar_path(artifact), lambda tmp: Path(tmp).write_text(text))


def embed_onnx_metadata(model_proto, meta: dict) -> None:
    """Set (replace) our JSON entry in an ``onnx.ModelProto``'s metadata_props."""
    keep = [p for p in model_proto.metadata_props if p.key != ONNX_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(keep)
    entry = model_proto.metadata_props.add()
    entry.key = ONNX_KEY
    entry.value = json.dumps(meta, sort_keys=True)


def save_onnx(model, path: Path, meta: dict) -> Path:
    """Write ``model`` to ``path`` with ``meta`` embedded in its ``metadata_props``."""
    import onnx

    embed_onnx_metadata(model, meta)
    onnx.save_model(model, str(path))
    return path
