"""Metadata carried by every exported artifact -- the contract with runtimes.

ONNX files hold it in ``metadata_props`` under :data:`ONNX_KEY` (one JSON
string); every other format gets a sidecar ``<artifact>.meta.json`` (for a
folder artifact such as OpenVINO IR, next to its ``.xml``).

Fields (all present unless noted):

========================  ====================================================
``schema``                :data:`SCHEMA_VERSION`
``model``                 registered model name, e.g. ``shufflenet_v2_x0_5``
``num_classes``           classifier outputs
``labels``                list of class names (``num_classes`` long)
``format``                export format name (``onnx``, ``onnx-int8``, ...)
``precision``             ``fp32`` | ``fp16`` | ``int8`` | ``bf16``
``input_name``            graph input name (``None`` where not applicable)
``output_name``           graph output name
``input_shape``           e.g. ``[-1, 3, 224, 224]`` (``-1`` = dynamic batch)
``layout``                ``NCHW`` or ``NHWC`` -- what the *artifact* takes;
                          callers always pass NCHW and runners transpose
``image_size``            int, square input side
``mean`` / ``std``        per-channel, on the 0-255 scale, RGB order
``crop_pct``              eval centre-crop fraction
``interpolation``         resize filter name
``source_checkpoint``     file name of the checkpoint
``source_sha256``         sha256 of the checkpoint file
``toolchain_version``     this package's version
``library_versions``      ``{"mindspore": ..., "onnx": ..., ...}``
``export_options``        the options the export ran with
========================  ====================================================
"""
from __future__ import annotations

import json
import os
from pathlib import Path

SCHEMA_VERSION = 1
ONNX_KEY = "shufflenet.metadata"
SIDECAR_SUFFIX = ".meta.json"

REQUIRED_FIELDS = ("schema", "model", "num_classes", "labels", "format", "precision",
                   "input_shape", "layout", "image_size", "mean", "std", "crop_pct",
                   "interpolation", "source_sha256", "toolchain_version")


def sidecar_path(artifact: str | os.PathLike) -> Path:
    return Path(str(artifact) + SIDECAR_SUFFIX)


def write_sidecar(artifact: str | os.PathLike, meta: dict) -> Path:
    from shufflenet.checkpoint import atomic_write

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


def read_artifact_metadata(artifact: str | os.PathLike) -> dict:
    """Metadata of an artifact: ONNX metadata_props first, else the sidecar.

    Raises :class:`shufflenet.errors.ExportError` when there is none.
    """
    from shufflenet.errors import ExportError

    artifact = Path(artifact)
    if not artifact.exists():
        raise ExportError(f"artifact not found: {artifact}")
    side = sidecar_path(artifact)
    if artifact.suffix == ".onnx":
        try:
            import onnx

            proto = onnx.load(str(artifact), load_external_data=False)
        except Exception as exc:
            raise ExportError(f"cannot read ONNX file {artifact}: corrupt or truncated "
                              f"({str(exc).splitlines()[0][:120]})") from None
        for p in proto.metadata_props:
            if p.key == ONNX_KEY:
                return json.loads(p.value)
    if side.exists():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise ExportError(f"unreadable metadata sidecar {side}: {exc}") from None
    raise ExportError(f"{artifact} carries no shufflenet metadata (no ONNX metadata_props "
                      f"entry {ONNX_KEY!r} and no {side.name}); export it with `shufflenet export`")
