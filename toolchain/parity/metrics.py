"""Streaming output metrics for one (reference, candidate) pair.

:class:`PairMetrics` keeps running sums and extremes only, so comparing any
number of samples uses memory bounded by one batch.

Definitions (per sample ``r`` = reference logits, ``c`` = candidate):

* ``max_abs_error`` / ``mean_abs_error``: over every logit of every sample;
* ``max_rel_error``: ``max |c - r| / max |r|`` per sample, worst sample --
  scale-free, and unlike an element-wise ratio it does not explode on logits
  that happen to be near zero;
* ``min_cosine`` / ``mean_cosine``: cosine similarity of the logit vectors;
* ``psnr``: ``10 log10(range(r)^2 / mse)`` with the range of all reference
  logits seen (dB; ``inf`` when identical);
* ``top1_agreement``: share of samples with the same arg-max;
* ``top5_overlap``: mean ``|top5(r) & top5(c)| / 5`` (k capped at the class count).
"""
from __future__ import annotations

import math

import numpy as np

from .statistics import accuracy_delta

__all__ = ["PairMetrics", "topk_indices"]


def topk_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest logits per row (unordered)."""
    k = min(k, logits.shape[1])
    return np.argpartition(-logits, k - 1, axis=1)[:, :k]


class PairMetrics:
    """Running accumulator; call :meth:`update` per batch, :meth:`result` at the end."""

    def __init__(self, topk: int = 5, confidence: float = 0.95) -> None:
        self.topk = topk
        self.confidence = confidence
        self.n = 0
        self.n_elems = 0
        self.non_finite = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.ref_min = math.inf
        self.ref_max = -math.inf
        self.cos_min = 1.0
        self.cos_sum = 0.0
        self.top1_same = 0
        # shared top-k classes, counted: a float running mean of k/5 ratios drifts below
        # the threshold it equals (ten 0.8s sum to 7.999...: 0.8 read as 0.7999)
        self.topk_shared = 0
        self.topk_slots = 0
        self.n_labelled = 0
        self.table = [0, 0, 0, 0]            # a, b, c, d of statistics.py
        self.ref_topk_correct = 0
        self.cand_topk_correct = 0

    def update(self, ref: np.ndarray, cand: np.ndarray, labels: np.ndarray | None = None) -> None:
        """Add one batch: ``ref`` and ``cand`` are ``(N, classes)`` logits."""
        ref = np.asarray(ref, np.float64)
        cand = np.asarray(cand, np.float64)
        if ref.shape != cand.shape:
            raise ValueError(f"output shapes differ: reference {ref.shape}, candidate {cand.shape}")
        finite = np.isfinite(cand).all(axis=1)
        self.non_finite += int((~finite).sum())
        cand = np.nan_to_num(cand, nan=0.0, posinf=0.0, neginf=0.0)
        diff = np.abs(cand - ref)
        n, k = ref.shape
        self.n += n
        self.n_elems += diff.size
        self.sum_abs += float(diff.sum())
        self.sum_sq += float((diff ** 2).sum())
        self.max_abs = max(self.max_abs, float(diff.max(initial=0.0)))
        scale = np.maximum(np.abs(ref).max(axis=1), 1e-12)
        self.max_rel = max(self.max_rel, float((diff.max(axis=1) / scale).max(initial=0.0)))
        self.ref_min = min(self.ref_min, float(ref.min()))
        self.ref_max = max(self.ref_max, float(ref.max()))
        nr, nc = np.linalg.norm(ref, axis=1), np.linalg.norm(cand, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = (ref * cand).sum(axis=1) / (nr * nc)
        cos = np.where((nr == 0) & (nc == 0), 1.0, np.nan_to_num(cos, nan=0.0))
        cos = np.where(finite, cos, -1.0)
        self.cos_min = min(self.cos_min, float(cos.min()))
        self.cos_sum += float(cos.sum())
        top1_r, top1_c = ref.argmax(1), cand.argmax(1)
        self.top1_same += int((top1_r == top1_c).sum())
        tk_r, tk_c = topk_indices(ref, self.topk), topk_indices(cand, self.topk)
        kk = tk_r.shape[1]
        self.topk_shared += int(sum(len(np.intersect1d(x, y)) for x, y in zip(tk_r, tk_c)))
        self.topk_slots += n * kk
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            ok_r, ok_c = top1_r == labels, top1_c == labels
            self.n_labelled += n
            self.table[0] += int((ok_r & ok_c).sum())
            self.table[1] += int((ok_r & ~ok_c).sum())
            self.table[2] += int((~ok_r & ok_c).sum())
            self.table[3] += int((~ok_r & ~ok_c).sum())
            self.ref_topk_correct += int((tk_r == labels[:, None]).any(1).sum())
            self.cand_topk_correct += int((tk_c == labels[:, None]).any(1).sum())

    def result(self) -> dict:
        """The metrics so far as a plain dict (``accuracy`` only with labels)."""
        if self.n == 0:
            raise ValueError("no samples were compared")
        mse = self.sum_sq / self.n_elems
        peak = self.ref_max - self.ref_min
        if self.non_finite:
            psnr = -math.inf
        elif mse == 0:
            psnr = math.inf
        else:
            psnr = 10 * math.log10(max(peak, 1e-12) ** 2 / mse)
        out = {
            "samples": self.n,
            "non_finite_samples": self.non_finite,
            "max_abs_error": math.inf if self.non_finite else self.max_abs,
            "mean_abs_error": self.sum_abs / self.n_elems,
            "max_rel_error": math.inf if self.non_finite else self.max_rel,
            "min_cosine": self.cos_min,
            "mean_cosine": self.cos_sum / self.n,
            "psnr_db": psnr,
            "top1_agreement": self.top1_same / self.n,
            "top5_overlap": self.topk_shared / self.topk_slots if self.topk_slots else 1.0,
        }
        if self.n_labelled:
            delta = accuracy_delta(*self.table, confidence=self.confidence)
            out["accuracy"] = {
                **delta.to_dict(),
                "reference_top5": self.ref_topk_correct / self.n_labelled,
                "candidate_top5": self.cand_topk_correct / self.n_labelled,
            }
        return out
