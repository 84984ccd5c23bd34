"""Optimizer groups, AMP choice, checkpoint policies: real objects, no training loop."""
from __future__ import annotations

import json

import numpy as np
import pytest

from shufflenet.config import make_config
from shufflenet.models import create_model
from shufflenet.train.build import create_optimizer, param_groups, resolve_amp
from shufflenet.train.run_checkpoints import CheckpointManager, epoch_metric, ranked_by


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


def test_epoch_metric_ranks_a_distilled_run_by_expected_loss_not_by_images_gained(tmp_path,
                                                                                 net):
    """A QAT run that validated against its fp32 teacher keeps the epoch expected to lose the
    fewest val images against fp32, even where another epoch gained a val image; the
    pipeline's qat stage reads that epoch back from the best checkpoint and says so. A run
    without a teacher ranks by val top-1; an epoch not validated has no metric."""
    from shufflenet.checkpoint import read_metadata
    from toolchain.pipeline.qat_stage import _kept_epoch
    from toolchain.pipeline.report_text import qat_best_text

    rows = [{"epoch": 1, "val_top1": 0.70, "val_expected_lost": 0.031, "val_agreement": 0.95,
             "val_logit_error": 0.036},
            {"epoch": 2, "val_top1": 0.74, "val_expected_lost": 0.048, "val_agreement": 0.93,
             "val_logit_error": 0.041},
            {"epoch": 3, "val_top1": 0.72, "val_expected_lost": 0.029, "val_agreement": 0.96,
             "val_logit_error": 0.034},
            {"epoch": 4, "loss": 0.1}]
    mgr = CheckpointManager(tmp_path, "m", "top_k", keep_max=2)
    for row in rows:
        mgr.save_epoch(net, row["epoch"], row["epoch"] * 10, epoch_metric(row),
                       {"epoch": row["epoch"], "metrics": row}, rank_by=ranked_by(row))
    kept = _kept_epoch(tmp_path / "m_best.ckpt")
    assert read_metadata(tmp_path / "m_best.ckpt")["epoch"] == 3 == kept["epoch"]
    m = {"best_epoch": 3, "best_val_top1": kept["val_top1"],
         "best_val_expected_lost": kept["val_expected_lost"],
         "best_val_logit_error": kept["val_logit_error"], "best_val_agreement": 0.96}
    assert qat_best_text(m) == ("best epoch 3 by val images expected lost vs fp32 (2.90 pp; "
                                "agreement 96.0 %, logit error 0.0340, val top-1 72.00 %)")
    plain = [{k: v for k, v in r.items() if not k.startswith("val_") or k == "val_top1"}
             for r in rows]
    assert [epoch_metric(r) for r in plain] == [0.70, 0.74, 0.72, None]
    assert [ranked_by(r) for r in plain] == ["val_top1"] * 3 + [None]
    assert epoch_metric({"val_top1": 0.5, "val_expected_lost": 0.0}) == 0.0


def test_a_resumed_run_ranked_by_another_measure_starts_its_best_again(tmp_path, net, caplog):
    """Epochs ranked by val top-1 (an index written before the rule had a name) and a resumed
    run's epochs ranked by expected loss do not compare: the first new epoch is the best."""
    from shufflenet.checkpoint import read_metadata

    old = CheckpointManager(tmp_path, "m", "top_k", keep_max=5)
    for epoch, top1 in ((1, 0.7), (2, 0.8)):
        old.save_epoch(net, epoch, epoch, top1, {"epoch": epoch, "metrics": {}})
    state = json.loads((tmp_path / "checkpoints.json").read_text())
    state.pop("rank_by")                                  # as an older version wrote it
    (tmp_path / "checkpoints.json").write_text(json.dumps(state))
    again = CheckpointManager(tmp_path, "m", "top_k", keep_max=5)
    assert again.rank_by == "val_top1"
    row = {"val_top1": 0.6, "val_expected_lost": 0.03}
    again.save_epoch(net, 3, 3, epoch_metric(row), {"epoch": 3, "metrics": row},
                     rank_by=ranked_by(row))
    assert read_metadata(tmp_path / "m_best.ckpt")["epoch"] == 3
    assert "start again from epoch 3" in caplog.text
    assert json.loads((tmp_path / "checkpoints.json").read_text())["rank_by"] == \
        "val_expected_lost"


def test_matmul_stem_is_the_same_convolution():
    """Same parameter (name, data) and the same outputs and weight gradients as Conv2D."""
    import mindspore as ms
    from mindspore import nn

    from shufflenet.train.fast_stem import MatmulConv2d, use_matmul_stem

    ms.set_seed(0)
    conv = nn.Conv2d(3, 24, 3, 2, pad_mode="pad", padding=1, has_bias=False)
    fast = MatmulConv2d(conv)
    assert fast.weight is conv.weight
    x = ms.Tensor(np.random.default_rng(0).standard_normal((2, 3, 37, 50), dtype=np.float32))
    want, got = conv(x).asnumpy(), fast(x).asnumpy()
    assert got.shape == want.shape == (2, 24, 19, 25)
    assert np.allclose(got, want, atol=1e-5)
    params = ms.ParameterTuple([conv.weight])
    g_want = nn.ForwardValueAndGrad(_sum_of_squares(conv), weights=params, get_by_list=True)(x)[1][0]
    g_got = nn.ForwardValueAndGrad(_sum_of_squares(fast), weights=params, get_by_list=True)(x)[1][0]
    assert np.allclose(g_got.asnumpy(), g_want.asnumpy(), rtol=1e-4, atol=1e-4)

    model = create_model("shufflenet_v2_x0_5", num_classes=10)
    names = [p.name for p in model.get_parameters()]
    assert use_matmul_stem(model)
    assert [p.name for p in model.get_parameters()] == names


def _sum_of_squares(cell):
    from mindspore import nn

    class SumOfSquares(nn.Cell):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def construct(self, x):
            return (self.inner(x) ** 2).sum()

    return SumOfSquares(cell)


# -- log_interval is honoured; clip_grad works with dynamic loss scaling -------
def test_log_interval_is_not_capped():
    from shufflenet.train.trainer import postfix_interval

    assert postfix_interval(make_config("demo", {"log_interval": 100})) == 100
    assert postfix_interval(make_config("demo", {"log_interval": 0})) == 1


def _weight_step(cfg_overrides):
    """Norm of the weight change after one SGD step (lr 1, no momentum/decay) of a tiny net."""
    import mindspore as ms
    from mindspore import nn

    from shufflenet.train.build import build_train_cell

    ms.set_seed(0)
    cfg = make_config("demo", {"opt": "sgd", "momentum": 0.0, "weight_decay": 0.0,
                               **cfg_overrides})
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(12, 4))
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    opt = nn.SGD(net.trainable_params(), learning_rate=1.0)
    cell = build_train_cell(net, cfg, opt, "O2")
    cell.set_train(True)
    x = ms.Tensor(np.random.default_rng(0).normal(0, 5, (8, 3, 2, 2)).astype(np.float32))
    y = ms.Tensor(np.arange(8, dtype=np.int32) % 4)
    # the first steps overflow fp16 at scale 2**16 and are skipped while the scale drops
    for _ in range(40):
        out = cell(x, y)
        assert isinstance(out, tuple) and len(out) == 3   # the dynamic loss-scale cell
        if not bool(out[1].asnumpy()):
            break
    else:
        pytest.fail("every step overflowed")
    after = [p.asnumpy() for p in net.trainable_params()]
    return float(np.sqrt(sum(((a.astype(np.float64) - b) ** 2).sum()
                             for a, b in zip(after, before))))


@pytest.mark.parametrize("mode", ["PYNATIVE_MODE", "GRAPH_MODE"])
def test_clip_grad_is_applied_with_dynamic_loss_scaling(mode):
    # graph mode is how training runs on Ascend/GPU: the step must compile there too
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_context(mode=getattr(ms, mode))
    try:
        _clip_grad_with_dynamic_scaling()
    finally:
        ms.set_context(mode=previous)


def _clip_grad_with_dynamic_scaling():
    base = {"dynamic_loss_scale": True, "amp_on_cpu": True, "amp_level": "O2"}
    unclipped = _weight_step(base)
    clipped = _weight_step({**base, "clip_grad": True, "clip_value": 1e-3})
    assert unclipped > 1e-2                     # a real step happened
    assert clipped <= 1e-3 * 1.05               # lr 1 x global norm <= clip value
