"""benchmarks/export_latency.py: the interleaving its latency ratios rest on."""
from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "export_latency.py"


def _bench():
    spec = importlib.util.spec_from_file_location("export_latency_bench", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7])
def test_each_model_follows_every_other_equally_often(n):
    # a fixed order made the int8 model timed right after fp32 ~4 % slower than
    # a byte-identical copy timed after it
    orders = _bench().balanced_orders(n)
    assert all(sorted(row) == list(range(n)) for row in orders)
    follows = Counter((a, b) for row in orders for a, b in zip(row, row[1:]))
    assert set(follows) == {(a, b) for a in range(n) for b in range(n) if a != b}
    assert len(set(follows.values())) <= 1


def test_time_sessions_times_every_model_at_every_thread_count(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    paths = {}
    for op in ("Relu", "Sigmoid", "Tanh"):
        graph = helper.make_graph(
            [helper.make_node(op, ["input"], ["out"])], op,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        paths[op] = tmp_path / f"{op}.onnx"
        onnx.save(model, str(paths[op]))
    lat = _bench().time_sessions(paths, np.ones((1, 8), np.float32), [1, 2], rounds=7, warmup=2)
    assert set(lat) == {(op, t) for op in paths for t in (1, 2)}
    assert all(0 < med <= p90 for med, p90 in lat.values())
