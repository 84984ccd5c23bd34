"""What the int8 export says about its search: images lost on the held-out split, and how
many layers it kept in fp32. (How far logits are from fp32's, per image and in decisions, is
:mod:`shufflenet.fidelity`.)
"""
from __future__ import annotations

import numpy as np


def heldout_drop(ref_top1: np.ndarray, top1: np.ndarray, labels: np.ndarray | None) -> float:
    """Top-1 accuracy lost on the held-out images (labelled), else the share of changed decisions.

    Counted, not a difference of two means: 1 image of 100 is exactly a 1 pp budget
    (``0.54 - 0.53`` is 0.010000000000000009).

    >>> heldout_drop(np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([0, 1, 1]))
    0.3333333333333333
    """
    n = len(top1)
    if labels is None:
        return int((top1 != ref_top1).sum()) / n
    return (int((ref_top1 == labels).sum()) - int((top1 == labels).sum())) / n


def fp32_layers_text(found: dict) -> str:
    """'3 of 57 layers in fp32' from an int8 search summary (an older one: '3 layers in fp32')."""
    n, total = len(found.get("fp32_layers") or []), found.get("layers")
    return f"{n} of {total} layers in fp32" if total else f"{n} layer(s) in fp32"


def mostly_fp32(found: dict) -> str | None:
    """A warning when the search kept most layers in fp32 to hold its budget: such an
    ``onnx-int8`` is int8 in name more than in size or speed (None: it is mostly int8)."""
    n, total = len(found.get("fp32_layers") or []), found.get("layers")
    if not total or 2 * n <= total:
        return None
    return (f"this onnx-int8 keeps {n} of its {total} layers in fp32 to hold its accuracy "
            "budget: little of int8's size or speed is left; fine-tune through int8 instead "
            "(shufflenet train --qat, or shufflenet pipeline --qat always) or ship the fp32 onnx")
