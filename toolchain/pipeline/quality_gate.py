"""The model-quality gate of the validate stage: does the model beat chance?"""
from __future__ import annotations

from toolchain.parity.statistics import PASS, better_than_chance_verdict

__all__ = ["CHANCE_GATE_VERSION", "chance_gate"]

CHANCE_GATE_VERSION = 2   # in validate's cache key: runs cached before the gate existed re-judge


def chance_gate(res: dict, confidence: float = 0.95) -> dict:
    """Does the model beat chance? One-sided exact binomial test of val top-1 against the val
    split's majority-class rate (what always guessing the commonest class scores).

    A model not shown better than chance fails the run (INCONCLUSIVE included: a model that may
    be guessing is not shipped); ``detail`` is one line with what was found and what to try.

    >>> chance_gate({"top1": 0.98, "num_images": 359, "majority_class_images": 37})["passed"]
    True
    >>> g = chance_gate({"top1": 1 / 3, "num_images": 30, "majority_class_images": 10})
    >>> g["passed"], g["test"]
    (False, 'FAIL')
    """
    n = int(res.get("num_images") or 0)
    correct = int(round(float(res.get("top1") or 0.0) * n))
    chance = (res.get("majority_class_images") or 0) / n if n else 1.0
    v = better_than_chance_verdict(correct, n, chance, confidence)
    found = (f"val top-1 {100 * v.estimate:.1f}% [95% CI {100 * v.ci[0]:.1f}-{100 * v.ci[1]:.1f}] "
             f"vs {100 * chance:.1f}% for always guessing the commonest class, {n} images")
    if v.state == PASS:
        detail = f"{found}: better than chance"
    elif v.state == "FAIL":
        detail = (f"{found}: the model is at chance level; try more epochs (--epoch_size), "
                  f"a lower learning rate, more or cleaner images per class, or check the labels")
    else:
        need = (f"~{v.samples_needed} val images would settle it" if v.samples_needed
                else "no val size would settle it")
        detail = (f"{found}: not shown better than chance (INCONCLUSIVE; {need}); try more val "
                  f"images or more training")
    return {"name": "model beats chance (val top-1 vs commonest class, exact binomial, 95%)",
            "passed": v.state == PASS, "verdict": "PASS" if v.state == PASS else "FAIL",
            "test": v.state, "samples_needed": v.samples_needed,
            "chance_pct": round(100 * chance, 2), "detail": detail}
