"""Latency validation: measure an artifact on a target, check the target's budgets.

>>> from toolchain.bench import bench_target, check_budgets     # doctest: +SKIP
>>> result = bench_target(resolve_artifact("m.onnx"), targets["x86-edge-ort-1t"])
>>> [c.status for c in check_budgets(result, targets["x86-edge-ort-1t"])]
['NOT JUDGED', ...]          # e.g. an x0_5 artifact against budgets sized for x1_0 @ 224 px
"""
from runtimes.measure import LatencyResult
from runtimes.plan import check_compatible

from .budgets import BudgetCheck, Judgement, check_budgets, judgement, overall_verdict
from .latency import measured_on
from .session import WrongOnDevice, bench_target, input_batch

__all__ = ["BudgetCheck", "Judgement", "LatencyResult", "bench_target", "check_budgets",
           "check_compatible", "input_batch", "judgement", "measured_on",
           "overall_verdict", "WrongOnDevice"]
