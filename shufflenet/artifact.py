"""The artifact contract: the metadata every exported artifact carries, and one
:class:`Artifact` value resolved once from a path.

Exporters write this metadata; runtimes, bench, parity and the pipeline read
it through :func:`resolve_artifact`, once, and pass the :class:`Artifact`
along. This module imports only the standard library (``onnx`` lazily, to
read an ONNX file's ``metadata_props``; MindSpore lazily, for a ``.ckpt``),
so the device agent's zipapp can ship it.

ONNX files hold the metadata in ``metadata_props`` under :data:`ONNX_KEY`
(one JSON string); every other format gets a sidecar ``<artifact>.meta.json``
(for OpenVINO IR, next to its ``.xml``).

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

>>> art = resolve_artifact("runs/demo/export/shufflenet_v2_x0_5.ncnn.param")  # doctest: +SKIP
>>> art.format, art.precision, [f.name for f in art.files]                    # doctest: +SKIP
('ncnn', 'fp32', ['...ncnn.param', '...ncnn.bin', '...ncnn.param.meta.json'])
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ExportError

__all__ = ["Artifact", "DEFAULT_CROP_PCT", "DEFAULT_IMAGE_SIZE", "DEFAULT_INTERPOLATION",
           "IMAGENET_MEAN", "IMAGENET_STD", "ONNX_KEY", "PREPROCESS_KEYS", "REQUIRED_FIELDS",
           "SCHEMA_VERSION", "SIDECAR_SUFFIX", "read_artifact_metadata", "resolve_artifact",
           "sidecar_path", "weights_path"]

SCHEMA_VERSION = 1
# The zoo's default eval preprocessing, the one place these numbers are written: the model
# configs (shufflenet.models.config), the recipes' defaults, EvalTransform and every reader of
# an artifact that lacks a field take them from here. mean/std on the 0-255 scale, RGB.
DEFAULT_IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bilinear"
# the model zoo's names, for readers that may not import MindSpore (targets files name the model
# their budgets are sized for); tests check it equals shufflenet.models.list_models()
MODEL_NAMES = ("shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
               "shufflenet_v2_x2_0")
ONNX_KEY = "shufflenet.metadata"
SIDECAR_SUFFIX = ".meta.json"

REQUIRED_FIELDS = ("schema", "model", "num_classes", "labels", "format", "precision",
                   "input_shape", "layout", "image_size", "mean", "std", "crop_pct",
                   "interpolation", "source_sha256", "toolchain_version")
# what a caller needs to turn an image into the artifact's input
PREPROCESS_KEYS = ("image_size", "mean", "std", "crop_pct", "interpolation", "layout",
                   "input_shape")


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``m.mnn`` -> ``m.mnn.meta.json``."""
    return Path(str(artifact) + SIDECAR_SUFFIX)


def weights_path(artifact: str | os.PathLike) -> Path | None:
    """The weights file a graph file needs next to it, or None.

    ``m.ncnn.param`` -> ``m.ncnn.bin``; OpenVINO ``m.xml`` -> ``m.bin``.
    """
    text = str(artifact)
    if text.endswith(".param"):
        return Path(text[: -len(".param")] + ".bin")
    if text.endswith(".xml"):
        return Path(text[: -len(".xml")] + ".bin")
    return None


def read_artifact_metadata(artifact: str | os.PathLike) -> dict:
    """Metadata of an exported artifact: ONNX ``metadata_props`` first, else the sidecar.

    Raises :class:`shufflenet.errors.ExportError` when there is none.
    """
    artifact = Path(artifact)
    if not artifact.exists():
        raise ExportError(f"artifact not found: {artifact}")
    side = sidecar_path(artifact)
    if artifact.suffix == ".onnx":
        try:
            import onnx

            proto = onnx.load(str(artifact), load_external_data=False)
        except ImportError:
            proto = None  # a device without onnx: only the sidecar can tell
        except Exception as exc:
            raise ExportError(f"cannot read ONNX file {artifact}: corrupt or truncated "
                              f"({str(exc).splitlines()[0][:120]})") from None
        for p in (proto.metadata_props if proto is not None else ()):
            if p.key == ONNX_KEY:
                return json.loads(p.value)
    if side.exists():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise ExportError(f"unreadable metadata sidecar {side}: {exc}") from None
    raise ExportError(f"{artifact} carries no shufflenet metadata (no ONNX metadata_props "
                      f"entry {ONNX_KEY!r} and no {side.name}); export it with `shufflenet export`")


@dataclass(frozen=True)
class Artifact:
    """One artifact, resolved once: its files, format, precision and metadata.

    ``path`` is the file an engine opens (``.onnx``, ``.ncnn.param``, ``.xml``,
    ``.ckpt``, ...); ``files`` is every file it needs on another machine
    (itself, its weights, its metadata sidecar), in that order.
    """

    path: Path
    format: str
    precision: str
    metadata: dict = field(hash=False, compare=False)
    files: tuple = ()

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model(self) -> str | None:
        return self.metadata.get("model")

    @property
    def image_size(self) -> int:
        return int(self.metadata.get("image_size") or DEFAULT_IMAGE_SIZE)

    @property
    def weights(self) -> Path | None:
        return weights_path(self.path)

    @property
    def preprocessing(self) -> dict:
        """The metadata an input pipeline needs (size, mean/std, crop, layout, shape)."""
        return {k: self.metadata[k] for k in PREPROCESS_KEYS if k in self.metadata}

    def summary(self) -> dict:
        """A small JSON-able description (for reports and run records)."""
        return {"path": str(self.path), "name": self.name, "format": self.format,
                "precision": self.precision, "model": self.model, "image_size": self.image_size}

    @classmethod
    def from_metadata(cls, path: "str | os.PathLike", metadata: dict) -> "Artifact":
        """The one builder: ``path`` with ``metadata`` already read (by the host, by an
        exporter before its sidecar exists, or carried to a device that lacks ``onnx``).

        Finds the files it needs on another machine (itself, its weights, its sidecar when
        present). A ``.ckpt`` is ``checkpoint``/``fp32``. Raises :class:`ExportError` when
        the weights a graph file needs are missing.
        """
        path, meta = Path(path), dict(metadata)
        if path.suffix == ".ckpt":
            return cls(path, "checkpoint", "fp32", meta, (path,))
        weights, side = weights_path(path), sidecar_path(path)
        if weights is not None and not weights.exists():
            raise ExportError(f"{path.name} needs its weights {weights.name} next to it "
                              f"(not found in {weights.parent})")
        files = (path, *[f for f in (weights, side) if f is not None and f.exists()])
        return cls(path, str(meta.get("format", "unknown")), str(meta.get("precision", "fp32")),
                   meta, files)

    def __str__(self) -> str:  # an Artifact reads like its path in messages and f-strings
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)


def resolve_artifact(artifact: "str | os.PathLike | Artifact") -> Artifact:
    """Read ``artifact``'s metadata and find its files once; an :class:`Artifact` passes through.

    A ``.ckpt`` is ``checkpoint``/``fp32`` with the checkpoint's own metadata
    (reading it needs MindSpore). Raises :class:`ExportError` (or
    :class:`CheckpointError`) for a missing file, missing weights or missing
    metadata.
    """
    if isinstance(artifact, Artifact):
        return artifact
    path = Path(artifact)
    if not path.exists():
        raise ExportError(f"artifact not found: {path}")
    if path.suffix == ".ckpt":
        from .checkpoint import read_metadata

        return Artifact.from_metadata(path, read_metadata(path))
    return Artifact.from_metadata(path, read_artifact_metadata(path))
