"""How far a model's logits are from a reference model's, per image and in decisions
(numpy only).

One definition each, used by the int8 search and the QAT start (:mod:`exporters.int8_metrics`),
QAT's per-epoch validation against its fp32 teacher (:mod:`shufflenet.validate`) and the
QAT measurements (``benchmarks/qat_accuracy.py``).
"""
from __future__ import annotations

import math

import numpy as np


def logit_error(out: np.ndarray, ref: np.ndarray) -> float:
    """Relative L2 error of logits against the reference ones (0 = identical): the mean over
    images of ``||out - ref||`` over the mean of ``||ref||``."""
    den = float(np.linalg.norm(ref.astype(np.float64), axis=1).mean())
    num = float(np.linalg.norm((out - ref).astype(np.float64), axis=1).mean())
    return num / max(den, 1e-30)


def flip_probabilities(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per image, the probability that the int8 logits ``out`` change fp32's top-1 decision.

    Each image's own quantisation error sets its noise level: ``sigma`` = the
    RMS of its logit error over the classes. The top-1 minus runner-up gap of
    fp32 (the margin ``m``) is crossed when the difference of two logits'
    errors (sd ``sqrt(2) sigma``) exceeds it: ``p = Phi(-m / (sqrt(2) sigma))``.
    A large margin is safe whatever the error; a near tie flips half the time.
    Logits that are not finite (a NaN or inf) decide nothing: probability 1.

    >>> ref = np.array([[4.0, 0.0], [1.0, 0.9]])
    >>> flip_probabilities(ref + [[0.1, -0.1], [0.1, -0.1]], ref).round(3).tolist()
    [0.0, 0.24]
    >>> flip_probabilities(np.array([[np.nan, 0.0]]), np.array([[4.0, 0.0]])).tolist()
    [1.0]
    """
    ref = np.asarray(ref, np.float64)
    err = np.asarray(out, np.float64) - ref
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    sigma = np.sqrt((err ** 2).mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sigma > 0, margin / (2.0 * sigma), np.inf)
    p = 0.5 * np.vectorize(math.erfc)(z)
    return np.where(~np.isfinite(sigma), 1.0, np.where(margin == 0, 0.5, p))


def expected_flips(out: np.ndarray, ref: np.ndarray, confidence: float = 0.95,
                   at_risk: np.ndarray | None = None) -> tuple:
    """``(rate, (low, high))``: the mean flip probability over the images and its normal
    interval across images (the images are a sample of the data).

    ``at_risk``: which images a flip costs (fp32 right: a flip loses it). With labels
    the rate is then the expected share of images *lost*, the quantity an accuracy
    budget names; a flip of an image fp32 already gets wrong costs nothing. Without
    labels every flip counts (the only safe reading).

    >>> ref = np.array([[1.0, 0.9], [1.0, 0.9]])
    >>> out = ref + [[0.1, -0.1], [0.1, -0.1]]
    >>> round(expected_flips(out, ref)[0], 3), round(expected_flips(out, ref, at_risk=[1, 0])[0], 3)
    (0.24, 0.12)
    """
    p = flip_probabilities(out, ref)
    if at_risk is not None:
        p = p * np.asarray(at_risk, np.float64)
    n = len(p)
    mean = float(p.mean())
    z = {0.9: 1.645, 0.95: 1.96, 0.99: 2.576}.get(round(confidence, 2), 1.96)
    half = z * float(p.std(ddof=1)) / math.sqrt(n) if n > 1 else 1.0
    return mean, (max(0.0, mean - half), min(1.0, mean + half))


def compare(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None = None,
            confidence: float = 0.95) -> dict:
    """``out``'s logits against the reference ``ref``'s on the same images: ``agreement``
    (top-1), ``logit_error`` and ``expected_lost`` with its interval ``expected_lost_ci``
    (:func:`expected_flips` of the images ``ref`` gets right when there are ``labels``, else
    of every image). What the int8 search ranks trials by and QAT ranks epochs by.

    >>> ref = np.array([[1.0, 0.9], [1.0, 0.9]])
    >>> r = compare(ref + [[0.1, -0.1], [0.1, -0.1]], ref, labels=np.array([0, 1]))
    >>> r["agreement"], round(r["expected_lost"], 3)
    (1.0, 0.12)
    """
    rate, ci = expected_flips(out, ref, confidence, at_risk=None if labels is None else
                              np.asarray(ref).argmax(1) == np.asarray(labels))
    return {"agreement": float((np.asarray(out).argmax(1) == np.asarray(ref).argmax(1)).mean()),
            "logit_error": logit_error(out, ref), "expected_lost": rate, "expected_lost_ci": ci}
