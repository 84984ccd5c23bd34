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

__all__ = ["AccuracyDelta", "FAIL", "INCONCLUSIVE", "PASS", "Verdict", "accuracy_delta",
           "accuracy_drop_verdict", "agreement_verdict", "better_than_chance_verdict",
           "binomial_tail", "mcnemar_exact", "newcombe_paired_interval",
           "samples_for_margin", "wilson_interval"]


def binomial_tail(k: int, n: int, p: float, upper: bool = True) -> float:
    """Exact ``P(X >= k)`` (``upper``) or ``P(X <= k)`` for ``X ~ Binomial(n, p)``.

    Summed in log space (exact enough for large ``n``, no overflow); the sum
    stops once the terms falling away from the mode are below 1e-17 of the
    largest, so a far tail of a large ``n`` costs a few hundred terms.

    >>> round(binomial_tail(2, 6, 0.5, upper=False), 5)   # (1 + 6 + 15) / 64
    0.34375
    >>> binomial_tail(0, 10, 0.3)
    1.0
    """
    k, n = int(k), int(n)
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if (upper and k <= 0) or (not upper and k >= n):
        return 1.0
    if (upper and k > n) or (not upper and k < 0):
        return 0.0
    if p in (0.0, 1.0):                       # all the mass on one count
        at = n if p == 1.0 else 0
        return float(at >= k) if upper else float(at <= k)
    lp, lq, lnf = math.log(p), math.log1p(-p), math.lgamma(n + 1)

    def log_pmf(i: int) -> float:
        return lnf - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq

    # walk away from k through the tail; beyond the mode the terms only shrink
    idx = range(k, n + 1) if upper else range(k, -1, -1)
    mode = (n + 1) * p
    terms: list[float] = []
    for i in idx:
        t = log_pmf(i)
        terms.append(t)
        past_mode = i >= mode if upper else i <= mode
        if past_mode and t < max(terms) - 39.2:      # e**-39.2 ~ 1e-17
            break
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


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
    return min(1.0, 2.0 * binomial_tail(min(b, c), n, 0.5, upper=False))


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
    delta = (c - b) / n            # == p1 - p2, without its rounding (0.05 - 0.03 > 0.02)
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


# -- non-inferiority: three-valued verdicts ----------------------------------------------
PASS, FAIL, INCONCLUSIVE = "PASS", "FAIL", "INCONCLUSIVE"
_MAX_SAMPLES = 10_000_000


@dataclass(frozen=True)
class Verdict:
    """A non-inferiority decision on a sampled quantity.

    ``PASS``: the whole interval is on the good side of the margin;
    ``FAIL``: the point estimate is on the bad side; ``INCONCLUSIVE``:
    neither -- ``samples_needed`` is the sample size at which the same
    observed rates would give ``PASS`` (``None`` when no size would).
    """

    state: str
    estimate: float
    ci: tuple
    margin: float
    samples: int
    samples_needed: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _smallest_n(n0: int, ok) -> int | None:
    """Smallest ``n >= n0`` with ``ok(n)`` true (``ok`` monotone), or None beyond the cap."""
    hi = max(n0, 1)
    while not ok(hi):
        if hi >= _MAX_SAMPLES:
            return None
        hi = min(hi * 2, _MAX_SAMPLES)
    lo = max(n0, 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def accuracy_drop_verdict(a: int, b: int, c: int, d: int, margin: float,
                          confidence: float = 0.95) -> Verdict:
    """Is the candidate's top-1 accuracy at most ``margin`` (fraction) below the reference's?

    The drop is ``(b - c) / n``; its interval is Newcombe's paired interval,
    negated. ``samples_needed`` scales the observed 2x2 table to larger
    ``n`` (same rates) until the interval's upper end is inside the margin.

    >>> accuracy_drop_verdict(100, 6, 1, 13, margin=0.02).state    # 4.2 pp drop
    'FAIL'
    >>> v = accuracy_drop_verdict(100, 1, 0, 19, margin=0.02)      # 0.8 pp, n = 120
    >>> v.state, v.samples_needed > 120
    ('INCONCLUSIVE', True)
    """
    n = a + b + c + d
    delta, lo, hi = newcombe_paired_interval(a, b, c, d, confidence)
    drop, ci = -delta, (-hi, -lo)
    if n == 0:
        return Verdict(INCONCLUSIVE, 0.0, (-1.0, 1.0), margin, 0, None)
    if drop > margin:
        return Verdict(FAIL, drop, ci, margin, n)
    if ci[1] <= margin:
        return Verdict(PASS, drop, ci, margin, n)

    def ok(m: int) -> bool:
        s = m / n
        table = [int(round(v * s)) for v in (a, b, c, d)]
        table[0] += m - sum(table)                 # keep the total exact after rounding
        _, l2, _ = newcombe_paired_interval(*table, confidence)
        return -l2 <= margin

    return Verdict(INCONCLUSIVE, drop, ci, margin, n, _smallest_n(n + 1, ok))


def agreement_verdict(agree: int, n: int, minimum: float, confidence: float = 0.95) -> Verdict:
    """Is the top-1 agreement at least ``minimum``? Wilson interval, same three states."""
    if n <= 0:
        return Verdict(INCONCLUSIVE, 0.0, (0.0, 1.0), minimum, 0, None)
    p = agree / n
    ci = wilson_interval(agree, n, confidence)
    if p < minimum:
        return Verdict(FAIL, p, ci, minimum, n)
    if ci[0] >= minimum:
        return Verdict(PASS, p, ci, minimum, n)
    needed = _smallest_n(n + 1, lambda m: wilson_interval(int(round(p * m)), m, confidence)[0]
                         >= minimum)
    return Verdict(INCONCLUSIVE, p, ci, minimum, n, needed)


def samples_for_margin(margin: float, discordant: float = 0.0, accuracy: float = 0.9,
                       confidence: float = 0.95) -> int | None:
    """Labelled images needed to prove a drop of at most ``margin`` when the truth is no drop.

    ``discordant``: share of images whose correctness differs between the two
    sides (split evenly between lost and gained); ``accuracy``: the
    reference's. Used for the README's sizing table.
    """
    def ok(m: int) -> bool:
        half = int(round(m * discordant / 2))
        a = int(round(m * accuracy)) - half
        d = m - a - 2 * half
        _, lo, _ = newcombe_paired_interval(a, half, half, d, confidence)
        return -lo <= margin

    return _smallest_n(10, ok)


def better_than_chance_verdict(correct: int, n: int, chance: float,
                               confidence: float = 0.95) -> Verdict:
    """Does a model's top-1 beat ``chance`` (e.g. the val split's majority-class rate)?

    One-sided exact binomial test of ``H0: accuracy <= chance``: ``PASS`` when
    ``P(X >= correct | n, chance) < 1 - confidence``; ``FAIL`` when the observed
    accuracy is at or below chance; ``INCONCLUSIVE`` otherwise, with
    ``samples_needed`` the val size at which the same accuracy would pass.
    ``ci`` is the Wilson interval of the accuracy; ``margin`` is ``chance``.

    >>> better_than_chance_verdict(40, 120, 1 / 3).state     # 33.3 % of 3 classes
    'FAIL'
    >>> better_than_chance_verdict(353, 359, 0.1).state
    'PASS'
    >>> v = better_than_chance_verdict(15, 36, 1 / 3)         # 41.7 %, p ~ 0.19
    >>> v.state, v.samples_needed > 36
    ('INCONCLUSIVE', True)
    """
    if n <= 0:
        return Verdict(INCONCLUSIVE, 0.0, (0.0, 1.0), chance, 0, None)
    acc = correct / n
    ci = wilson_interval(correct, n, confidence)
    alpha = 1.0 - confidence
    if acc <= chance + 1e-12:
        return Verdict(FAIL, acc, ci, chance, n)
    if binomial_tail(correct, n, chance) < alpha:
        return Verdict(PASS, acc, ci, chance, n)
    needed = _smallest_n(n + 1, lambda m: binomial_tail(int(round(acc * m)), m, chance) < alpha)
    return Verdict(INCONCLUSIVE, acc, ci, chance, n, needed)
