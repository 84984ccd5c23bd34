"""The deployment contract: what an artifact tells an app about its input and output.

An app takes the class names, the preprocessing and the input size from the
artifact's metadata. If any of them differs from what the checkpoint was
trained and evaluated with, the app is broken even when the logits agree (it
shows the wrong class names, or feeds differently prepared pixels), so each
mismatch is a failure that names its field.

>>> contract_mismatches({"labels": ["cat", "dog"], "image_size": 64},
...                     {"labels": ["dog", "cat"], "image_size": 64})
['labels: artifact [dog, cat] vs checkpoint [cat, dog]']
"""
from __future__ import annotations

__all__ = ["CONTRACT_FIELDS", "contract_mismatches"]

# field -> how to read it from a metadata dict (checkpoint or artifact)
CONTRACT_FIELDS = ("labels", "mean", "std", "channel_order", "resize", "interpolation",
                   "crop_pct", "input_size")


def _resize(meta: dict):
    size, crop = meta.get("image_size"), meta.get("crop_pct")
    if size is None or not crop:
        return None
    return int(round(int(size) / float(crop)))


def _input_size(meta: dict):
    shape = meta.get("input_shape")
    if shape and len(shape) == 4:
        spatial = shape[1:3] if str(meta.get("layout", "NCHW")).upper() == "NHWC" else shape[2:]
        return [int(v) for v in spatial]
    size = meta.get("image_size")
    return None if size is None else [int(size), int(size)]


def _read(meta: dict, name: str):
    if name == "resize":
        return _resize(meta)
    if name == "input_size":
        return _input_size(meta)
    if name == "channel_order":
        return str(meta.get("channel_order", "RGB")).upper()
    value = meta.get(name)
    if name in ("mean", "std") and value is not None:
        return [round(float(v), 4) for v in value]
    if name == "crop_pct" and value is not None:
        return round(float(value), 6)
    if name == "labels" and value is not None:
        return [str(v) for v in value]
    return value


def _show(value) -> str:
    if isinstance(value, list):
        shown = ", ".join(str(v) for v in value[:6]) + (", ..." if len(value) > 6 else "")
        return f"[{shown}]"
    return str(value)


def contract_mismatches(reference: dict, artifact: dict) -> list[str]:
    """One ``"field: artifact X vs checkpoint Y"`` line per contract field that differs.

    A field the checkpoint does not record is not judged (``None`` on the
    reference side); a field the artifact lacks while the checkpoint records
    it is a mismatch (an app cannot know it).
    """
    out = []
    for name in CONTRACT_FIELDS:
        want = _read(reference, name)
        if want is None:
            continue
        have = _read(artifact, name)
        if have != want:
            out.append(f"{name}: artifact {_show(have)} vs checkpoint {_show(want)}")
    return out
