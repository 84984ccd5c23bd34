"""The tolerances each built-in precision profile holds an artifact to.

One table, below every reader: parity judges a pair with it
(:mod:`toolchain.parity.profiles` wraps it in gates and statistics) and the
exporter bundles the same numbers with each artifact's test vectors
(:mod:`exporters.vectors`), so a device check and parity can never disagree
about what "equal" means. Gate names are documented in
:data:`toolchain.parity.profiles.GATES`; ``None`` means the gate is not used.
"""
from __future__ import annotations

__all__ = ["TOLERANCES", "tolerances_for"]

_COMMON = {"max_abs_error": None, "mean_abs_error": None, "min_mean_cosine": None,
           "confidence": 0.95, "noninferiority": 0.0}
TOLERANCES: dict[str, dict] = {
    # the file must compute the same function: any flip or real drop fails
    "fp32": dict(_COMMON, max_rel_error=1e-3, min_cosine=0.99999, min_psnr_db=60.0,
                 min_top1_agreement=0.999, min_top5_overlap=0.99, max_accuracy_drop=0.001,
                 alpha=0.05, layer_rel_error=1e-3),
    # half-precision rounding allowed, decisions must hold
    "fp16": dict(_COMMON, max_rel_error=3e-2, min_cosine=0.999, min_psnr_db=35.0,
                 min_top1_agreement=0.95, min_top5_overlap=0.9, max_accuracy_drop=0.005,
                 alpha=0.05, layer_rel_error=2e-2),
    # quantisation changes raw values by design: judge decisions and accuracy
    "int8": dict(_COMMON, max_rel_error=None, min_cosine=None, min_mean_cosine=0.95,
                 min_psnr_db=None, min_top1_agreement=0.85, min_top5_overlap=0.8,
                 max_accuracy_drop=0.02, alpha=None, layer_rel_error=0.3, noninferiority=1.0),
}
TOLERANCES["bf16"] = dict(TOLERANCES["fp16"], max_rel_error=6e-2, min_cosine=0.995, min_psnr_db=30.0,
                          layer_rel_error=5e-2)

# a QAT checkpoint (its fake-quant forward in MindSpore) against the int8 artifact exported from
# it: the same integer grid on both sides, so the pair must agree almost exactly. What remains
# is a rounding tie decided the other way (ONNX Runtime requantises with one float multiplier,
# MindSpore divides the float accumulator). Measured on 120 real val photos (x0_5, 64 px):
# worst image max|d|/max|ref| 0.035, PSNR 60.6 dB, cosine 1.0, top-1 agreement 100 %, mean
# relative logit error 9e-4 (on 359 demo digits: 9e-4, 100 %). Thresholds: ~3x the worst
# image's error, and decisions as strict as fp16's
TOLERANCES["qat"] = dict(_COMMON, max_rel_error=0.1, min_cosine=0.999, min_psnr_db=45.0,
                         min_top1_agreement=0.99, min_top5_overlap=0.99, max_accuracy_drop=0.005,
                         alpha=0.05, layer_rel_error=0.1)


def tolerances_for(precision: str | None) -> tuple[str, dict]:
    """``(profile name, a copy of its tolerances)`` for an artifact precision (unknown -> fp32)."""
    name = str(precision or "fp32").lower()
    name = name if name in TOLERANCES else "fp32"
    return name, dict(TOLERANCES[name])
