"""Paired statistics for accuracy deltas: exact McNemar and Newcombe's interval.

Both need only the 2x2 table of per-sample correctness, so they stream:

==================  =====================  =====================
                    candidate correct      candidate wrong
reference correct   ``a`` (both)           ``b`` (lost)
reference wrong     ``c`` (gained)         ``d`` (neither)
==================  =====================  =====================

``delta = acc_candidate - acc_reference = (c - b) / n``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["AccuracyDelta", "accuracy_delta", "mcnemar_exact", "newcombe_paired_interval",
           "wilson_interval"]


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value on the discordant pairs ``b`` and ``c``.

    Under H0 each discordant pair is equally likely to fall either way, so
    ``min(b, c) ~ Binomial(b + c, 1/2)``; the p-value doubles its tail.

    >>> round(mcnemar_exact(5, 1), 5)    # 2 * (1 + 6) / 64
    0.21875
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError("counts must be non-negative")
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    # log-space sum keeps large n exact enough without overflow
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2)
                 for i in range(k + 1)]
    top = max(log_terms)
    tail = math.exp(top) * sum(math.exp(t - top) for t in log_terms)
    return min(1.0, 2.0 * tail)


def _z(confidence: float) -> float:
    from statistics import NormalDist

    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (no continuity correction)."""
    if n <= 0:
        return (0.0, 1.0)
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe_paired_interval(a: int, b: int, c: int, d: int,
                             confidence: float = 0.95) -> tuple[float, float, float]:
    """Newcombe's (1998, method 10) interval for ``p_cand - p_ref`` on paired data.

    Returns ``(delta, lower, upper)`` with ``p_ref = (a+b)/n`` and
    ``p_cand = (a+c)/n``. Wilson intervals of both marginals are combined
    with the phi correlation of the table; phi is taken as 0 when a margin
    is empty (Newcombe's convention).
    """
    n = a + b + c + d
    if n <= 0:
        return (0.0, -1.0, 1.0)
    p1, p2 = (a + c) / n, (a + b) / n          # candidate, reference
    l1, u1 = wilson_interval(a + c, n, confidence)
    l2, u2 = wilson_interval(a + b, n, confidence)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(margins) if margins > 0 else 0.0
    delta = p1 - p2
    d_low = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    d_up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (delta, max(-1.0, delta - d_low), min(1.0, delta + d_up))


@dataclass(frozen=True)
class AccuracyDelta:
    """Top-1 accuracy of both sides, their difference, its interval and McNemar's p."""

    n: int
    reference_accuracy: float
    candidate_accuracy: float
    delta: float
    ci_low: float
    ci_high: float
    confidence: float
    lost: int        # b: reference right, candidate wrong
    gained: int      # c: reference wrong, candidate right
    mcnemar_p: float
    method: str = "exact McNemar; Newcombe (1998) method 10 interval"

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_delta(a: int, b: int, c: int, d: int, confidence: float = 0.95) -> AccuracyDelta:
    """Everything a gate needs from the paired correctness table."""
    n = a + b + c + d
    delta, lo, hi = newcombe_paired_interval(a, b, c, d, confidence)
    return AccuracyDelta(n=n, reference_accuracy=(a + b) / n if n else 0.0,
                         candidate_accuracy=(a + c) / n if n else 0.0, delta=delta,
                         ci_low=lo, ci_high=hi, confidence=confidence, lost=b, gained=c,
                         mcnemar_p=mcnemar_exact(b, c))
