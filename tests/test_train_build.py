"""Optimizer groups, AMP choice, checkpoint policies: real objects, no training loop."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shufflenet.config import make_config
from shufflenet.models import create_model
from shufflenet.train.build import create_optimizer, param_groups, resolve_amp
from shufflenet.train.checkpoints import CheckpointManager


@pytest.fixture(scope="module")
def net():
    return create_model("shufflenet_v2_x0_5", num_classes=10)


def test_weight_decay_skips_batchnorm_and_bias(net):
    decay, no_decay, order = param_groups(net, 4e-5, True)
    assert decay["weight_decay"] == 4e-5 and no_decay["weight_decay"] == 0.0
    names = {p.name for p in no_decay["params"]}
    assert names and all(n.endswith((".gamma", ".beta")) for n in names)
    assert all(len(p.shape) == 4 or p.name == "classifier.weight" for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(order["order_params"])
    everything = param_groups(net, 4e-5, False)
    assert len(everything[0]["params"]) == len(order["order_params"])


@pytest.mark.parametrize("opt,cls", [("momentum", "Momentum"), ("sgd", "SGD"),
                                     ("adamw", "AdamWeightDecay"), ("adam", "Adam")])
def test_optimizers(net, opt, cls):
    cfg = make_config("demo", {"opt": opt, "use_nesterov": False})
    assert type(create_optimizer(net, cfg, np.full(4, 0.1, np.float32))).__name__ == cls


def test_nesterov_is_passed_through(net):
    cfg = make_config("demo", {"opt": "sgd", "use_nesterov": True})
    optim = create_optimizer(net, cfg, np.full(4, 0.1, np.float32))
    assert type(optim).__name__ == "Momentum" and optim.use_nesterov


def test_amp_is_fp32_on_cpu_unless_forced():
    cfg = make_config("shufflenet_v2_1.0_ascend")
    assert resolve_amp(cfg, "CPU") == "O0"
    assert resolve_amp(cfg, "Ascend") == "O3" and resolve_amp(cfg, "GPU") == "O3"
    assert resolve_amp(make_config("shufflenet_v2_1.0_ascend", {"amp_on_cpu": True}), "CPU") == "O3"


@pytest.mark.parametrize("policy,metrics,kept", [
    ("latest_k", [0.5, 0.9, 0.7, 0.6], [3, 4]),
    ("top_k", [0.5, 0.9, 0.7, 0.6], [2, 3]),
])
def test_checkpoint_policies_and_best(tmp_path, net, policy, metrics, kept):
    from shufflenet.checkpoint import read_metadata

    mgr = CheckpointManager(tmp_path, "m", policy, keep_max=2)
    for epoch, metric in enumerate(metrics, start=1):
        mgr.save_epoch(net, epoch, epoch * 10, metric, {"epoch": epoch, "metrics": {"m": metric}})
    files = sorted(tmp_path.glob("m-*.ckpt"))
    assert sorted(read_metadata(f)["epoch"] for f in files) == kept
    assert read_metadata(tmp_path / "m_best.ckpt")["epoch"] == 2
    # the index survives a restart (resume keeps pruning correctly)
    again = CheckpointManager(tmp_path, "m", policy, keep_max=2)
    assert [e["epoch"] for e in again.entries] == kept and again.best["metric"] == 0.9
    assert json.loads((tmp_path / "checkpoints.json").read_text())["best"]["epoch"] == 2
