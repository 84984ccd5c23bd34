"""Parity check: is the file on the device the model that was trained?

The checkpoint runs in MindSpore (the reference); every artifact runs on
every engine that can run it; both see the same real images, preprocessed
once. Metrics stream batch by batch, gates come from per-precision profiles,
and a failing pair is localised to its first divergent layer.

>>> from toolchain.parity import run_parity
>>> report = run_parity("best.ckpt", ["out/m.onnx", "out/m.int8.onnx"])  # doctest: +SKIP
>>> report.passed                                                         # doctest: +SKIP
"""
from .comparator import check_artifacts, failure_message, run_parity
from .contract import contract_mismatches
from .inputs import InputSet, resolve_inputs
from .metrics import PairMetrics
from .profiles import PROFILES, Profile, load_profile
from .report import LayerDivergence, PairResult, ParityReport
from .statistics import (
    accuracy_delta,
    accuracy_drop_verdict,
    agreement_verdict,
    mcnemar_exact,
    newcombe_paired_interval,
    samples_for_margin,
    wilson_interval,
)
from .writers import junit_xml, markdown, write_json, write_junit, write_markdown

__all__ = ["InputSet", "LayerDivergence", "PROFILES", "PairMetrics", "PairResult",
           "ParityReport", "Profile", "accuracy_delta", "accuracy_drop_verdict", "agreement_verdict",
           "check_artifacts", "contract_mismatches", "failure_message", "samples_for_margin",
           "junit_xml", "load_profile", "markdown", "mcnemar_exact", "newcombe_paired_interval",
           "resolve_inputs", "run_parity", "wilson_interval", "write_json", "write_junit",
           "write_markdown"]
