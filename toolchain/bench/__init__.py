"""Latency validation: measure an artifact on a target, check the target's budgets.

>>> from toolchain.bench import bench_target, check_budgets     # doctest: +SKIP
>>> result = bench_target("m.onnx", targets["x86-edge-ort-1t"])
>>> [c.passed for c in check_budgets(result, targets["x86-edge-ort-1t"])]
"""
from .budgets import BudgetCheck, check_budgets
from .latency import LatencyResult, measure_latency
from .session import bench_target, check_compatible, input_batch

__all__ = ["BudgetCheck", "LatencyResult", "bench_target", "check_budgets", "check_compatible",
           "input_batch", "measure_latency"]
