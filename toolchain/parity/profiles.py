"""Parity gates: thresholds per precision, overridable per metric.

A profile is a flat mapping of gate name -> threshold (``None`` disables a
gate). Built-in profiles: ``fp32`` (strict: the file must compute the same
function), ``fp16`` (rounding of half precision allowed), ``int8`` (judged on
decisions -- top-1 agreement and accuracy -- not on raw error, which
quantisation changes by design). A YAML/JSON file overrides any subset:

.. code-block:: yaml

    base: int8              # optional, default: the artifact's precision
    min_top1_agreement: 0.95
    max_accuracy_drop: 0.01

Gates on sampled decisions (top-1 agreement, accuracy drop) are
non-inferiority tests in the ``int8`` profile (``noninferiority: 1``):
PASS only when the whole confidence interval is inside the margin, FAIL
when the point estimate is outside it, INCONCLUSIVE otherwise (with the
number of samples that would settle it). In ``fp32``/``fp16``/``bf16`` the
per-sample error gates prove the artifact computes the same function on
every image, so their decision gates compare the observed value with a
near-zero margin (and exact McNemar fails any significant drop). ``qat``
judges an int8 artifact against the QAT checkpoint it was exported from
(both compute on the same integer grid): near-exact, chosen by default for
that pair.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from shufflenet.errors import ConfigError
from shufflenet.tolerances import TOLERANCES, tolerances_for

from .statistics import PASS, accuracy_drop_verdict, agreement_verdict

__all__ = ["GATES", "PROFILES", "Profile", "GateCheck", "default_profile_name", "load_profile",
           "profile_for_precision"]

# gate -> (metric key in PairMetrics.result(), "max" | "min", description)
GATES = {
    "max_abs_error": ("max_abs_error", "max", "largest absolute logit difference"),
    "mean_abs_error": ("mean_abs_error", "max", "mean absolute logit difference"),
    "max_rel_error": ("max_rel_error", "max", "worst sample's max |diff| / max |reference logit|"),
    "min_cosine": ("min_cosine", "min", "worst sample's cosine similarity of the logits"),
    "min_mean_cosine": ("mean_cosine", "min", "mean cosine similarity of the logits"),
    "min_psnr_db": ("psnr_db", "min", "PSNR of the logits (dB)"),
    "min_top1_agreement": ("top1_agreement", "min",
                           "share of samples with the same top-1 class (int8: PASS when its whole "
                           "Wilson interval is above the threshold)"),
    "min_top5_overlap": ("top5_overlap", "min", "mean overlap of the top-5 sets"),
    "max_accuracy_drop": ("accuracy_drop", "max",
                          "top-1 accuracy lost vs the checkpoint (labelled data only; int8: PASS "
                          "when the whole interval of the drop is below the threshold)"),
}
# settings that are not gates on the final output
SETTINGS = {
    "alpha": "a drop with exact McNemar p below alpha fails (labelled data only)",
    "confidence": "confidence level of the accuracy-delta interval",
    "layer_rel_error": "relative RMS error above which a layer counts as diverged",
    "noninferiority": "1: decision gates are three-valued non-inferiority tests on their "
                      "interval; 0: the observed value is compared with the threshold",
}

# the numbers of each built-in profile live below every reader (exporters bundle them with
# the test vectors): shufflenet.tolerances
PROFILES = TOLERANCES


@dataclass(frozen=True)
class GateCheck:
    """One gate applied to one pair; ``ci`` is set for the gates on sampled decisions."""
    gate: str
    threshold: float
    value: float | None
    passed: bool
    description: str = ""
    ci: tuple | None = None
    # PASS | FAIL | INCONCLUSIVE; None = PASS/FAIL from ``passed``
    verdict: str | None = None
    samples_needed: int | None = None
    detail: str = ""

    @property
    def state(self) -> str:
        return self.verdict or ("PASS" if self.passed else "FAIL")

    def to_dict(self) -> dict:
        out = {"gate": self.gate, "threshold": self.threshold, "value": self.value,
               "passed": self.passed, "verdict": self.state}
        if self.ci is not None:
            out["ci"] = list(self.ci)
        if self.samples_needed is not None:
            out["samples_needed"] = self.samples_needed
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Profile:
    """Named thresholds; ``source`` says where they came from.

    Gates on numerical error compare the observed value with the threshold.
    With ``noninferiority`` the two gates on sampled *decisions* account for
    the sample size in both directions: top-1 agreement passes only when its
    Wilson interval lies wholly above the threshold, the accuracy drop only
    when the Newcombe interval of the drop lies wholly below
    ``max_accuracy_drop``; a point estimate outside fails; anything else is
    INCONCLUSIVE with the samples needed. ``alpha`` (fp32/fp16) additionally
    fails any drop that the exact McNemar test finds significant.
    """
    name: str
    thresholds: dict = field(default_factory=dict)
    source: str = "built-in"

    def get(self, key: str, default=None):
        value = self.thresholds.get(key)
        return default if value is None else value

    def to_dict(self) -> dict:
        return {"name": self.name, "source": self.source, "thresholds": dict(self.thresholds)}

    def evaluate(self, metrics: dict) -> list[GateCheck]:
        """Apply every enabled gate to ``metrics`` (a PairMetrics result)."""
        checks = []
        values = dict(metrics)
        acc = metrics.get("accuracy")
        confidence = float(self.get("confidence", 0.95))
        if acc:
            values["accuracy_drop"] = -acc["delta"]
        noninferiority = bool(self.get("noninferiority", 0.0))
        for gate, (key, kind, desc) in GATES.items():
            threshold = self.thresholds.get(gate)
            if threshold is None or key not in values:
                continue
            value = values[key]
            ci, verdict = None, None
            if gate == "min_top1_agreement" and metrics.get("samples"):
                n = int(metrics["samples"])
                verdict = agreement_verdict(int(round(value * n)), n, threshold, confidence)
            elif gate == "max_accuracy_drop":
                n, b, c = int(acc["n"]), int(acc["lost"]), int(acc["gained"])
                a = int(round(acc["reference_accuracy"] * n)) - b     # both right
                verdict = accuracy_drop_verdict(a, b, c, n - a - b - c, threshold, confidence)
            if verdict is not None:
                ci = verdict.ci
            # a value equal to its threshold passes even after float rounding (0.8 vs 0.7999...)
            tol = 1e-9 * max(1.0, abs(float(threshold)))
            ok = value <= threshold + tol if kind == "max" else value >= threshold - tol
            if isinstance(value, float) and math.isnan(value):
                ok, verdict = False, None
            if noninferiority and verdict is not None:
                checks.append(GateCheck(gate, threshold, value, verdict.state == PASS, desc, ci,
                                        verdict.state, verdict.samples_needed))
            else:
                checks.append(GateCheck(gate, threshold, value, bool(ok), desc, ci))
        alpha = self.thresholds.get("alpha")
        if acc and alpha is not None:
            significant = acc["delta"] < 0 and acc["mcnemar_p"] < alpha
            checks.append(GateCheck("no_significant_drop", alpha, acc["mcnemar_p"], not significant,
                                    "accuracy drop with exact McNemar p < alpha"))
        return checks


def default_profile_name(meta: dict, source_matches_checkpoint: bool | None) -> str:
    """The built-in profile an artifact is judged by: ``qat`` for an int8 artifact exported from
    a QAT checkpoint when the reference *is* that checkpoint, else its precision's."""
    if (meta.get("export_options") or {}).get("qat") and source_matches_checkpoint:
        return "qat"
    return str(meta.get("precision") or "fp32")


def profile_for_precision(precision: str | None) -> Profile:
    """The built-in profile for an artifact precision (unknown -> fp32)."""
    return Profile(*tolerances_for(precision))


def load_profile(spec: str | os.PathLike | None, precision: str | None = None) -> Profile:
    """A built-in name (``fp32``/``fp16``/``int8``/``bf16``), a YAML/JSON file, or None.

    A file's keys override its ``base`` profile (default: the precision's).
    Unknown keys are an error, so a typo never silently disables a gate.
    """
    if spec is None:
        return profile_for_precision(precision)
    if str(spec).lower() in PROFILES and not Path(str(spec)).is_file():
        return profile_for_precision(str(spec).lower())
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"unknown parity profile {str(spec)!r}: use one of "
                          f"{', '.join(sorted(PROFILES))} or a YAML/JSON file")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"cannot parse parity profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"parity profile {path} must be a mapping of gate: threshold")
    base = str(data.pop("base", precision or "fp32")).lower()
    if base not in PROFILES:
        raise ConfigError(f"parity profile {path}: unknown base {base!r} "
                          f"(use one of {', '.join(sorted(PROFILES))})")
    unknown = sorted(set(data) - set(GATES) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"parity profile {path}: unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(list(GATES) + list(SETTINGS))}")
    thresholds = dict(PROFILES[base])
    for key, value in data.items():
        if value is not None and not isinstance(value, (int, float)):
            raise ConfigError(f"parity profile {path}: {key} must be a number or null, got {value!r}")
        thresholds[key] = None if value is None else float(value)
    return Profile(f"{base}+{path.name}", thresholds, source=str(path))
