"""Registry-wide model tests: shapes, exact parameter counts, gradients, configs."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import nn, ops

from shufflenet import create_model, list_models
from shufflenet.errors import ConfigError
from shufflenet.macs import count_macs, count_params
from shufflenet.models import ShuffleNetV2, get_model_config

ALL = list_models()

# The seed's table: all parameters incl. BN moving statistics, and trainable.
EXPECTED_PARAMS = {
    "shufflenet_v2_x0_5": (1_373_744, 1_365_792),
    "shufflenet_v2_x1_0": (2_294_940, 2_278_760),
    "shufflenet_v2_x1_5": (3_530_160, 3_506_720),
    "shufflenet_v2_x2_0": (7_436_316, 7_402_600),
}
EXPECTED_MMACS = {"shufflenet_v2_x0_5": 41, "shufflenet_v2_x1_0": 146,
                  "shufflenet_v2_x1_5": 299, "shufflenet_v2_x2_0": 591}


def test_registry_lists_the_four_widths():
    assert ALL == sorted(EXPECTED_PARAMS)


@pytest.mark.parametrize("name", ALL)
def test_exact_parameter_counts(name):
    assert count_params(create_model(name)) == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", ALL)
def test_macs_match_the_paper(name):
    mmacs = count_macs(create_model(name), (224, 224)) / 1e6
    assert abs(mmacs - EXPECTED_MMACS[name]) < 1.0


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shape(name, batch):
    net = create_model(name, num_classes=7)
    net.set_train(False)
    x = ms.Tensor(np.random.RandomState(1).rand(batch, 3, 64, 64).astype(np.float32))
    assert net(x).shape == (batch, 7)
    feats = net.forward_features(x)
    assert feats.shape[1] == net.num_features
    assert net.forward_head(feats, pre_logits=True).shape == (batch, net.num_features)


@pytest.mark.parametrize("name", ALL)
def test_config_names_exist_among_parameters(name):
    net = create_model(name)
    cfg = get_model_config(name)
    names = {p.name for p in net.get_parameters()}
    assert f"{cfg.first_conv}.weight" in names
    assert f"{cfg.classifier}.weight" in names
    assert cfg.input_size == (3, 224, 224) and cfg.crop_pct == 0.875
    assert cfg.url.endswith(f"{name}-{cfg.sha256_prefix}.ckpt")
    assert cfg.top1 is not None and cfg.top5 is not None


def test_mindcv_parameter_layout():
    names = [p.name for p in create_model("shufflenet_v2_x1_0").get_parameters()]
    for expected in ["first_conv.0.weight", "first_conv.1.gamma", "first_conv.1.beta",
                     "first_conv.1.moving_mean", "first_conv.1.moving_variance",
                     "features.0.branch_main.0.weight", "features.0.branch_main.3.weight",
                     "features.0.branch_main.5.weight", "features.0.branch_main.6.gamma",
                     "features.0.branch_proj.0.weight", "features.0.branch_proj.2.weight",
                     "features.1.branch_main.1.moving_variance", "conv_last.0.weight",
                     "classifier.weight"]:
        assert expected in names, expected
    assert "classifier.bias" not in names
    assert not any(n.startswith("features.1.branch_proj") for n in names)


def test_channel_split_is_even_odd():
    from shufflenet.models.shufflenetv2 import channel_split

    x = np.arange(2 * 6 * 2 * 2, dtype=np.float32).reshape(2, 6, 2, 2)
    even, odd = channel_split(ms.Tensor(x))
    np.testing.assert_array_equal(even.asnumpy(), x[:, 0::2])
    np.testing.assert_array_equal(odd.asnumpy(), x[:, 1::2])


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_trainable_parameter(name):
    net = create_model(name, num_classes=4)
    net.set_train(True)
    loss_fn = nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")
    params = net.trainable_params()

    def forward(x, y):
        return loss_fn(net(x), y)

    grad_fn = ms.value_and_grad(forward, None, params)
    x = ms.Tensor(np.random.RandomState(0).rand(4, 3, 64, 64).astype(np.float32))
    y = ms.Tensor(np.array([0, 1, 2, 3], np.int32))
    _, grads = grad_fn(x, y)
    assert len(grads) == len(params)
    dead = [p.name for p, g in zip(params, grads) if float(ops.abs(g).sum().asnumpy()) == 0.0]
    assert dead == []


def test_in_channels_one():
    net = create_model("shufflenet_v2_x0_5", in_channels=1, num_classes=3)
    assert net(ms.Tensor(np.zeros((1, 1, 64, 64), np.float32))).shape == (1, 3)


def test_reset_classifier_keeps_mindcv_name():
    net = create_model("shufflenet_v2_x0_5", num_classes=10)
    net.reset_classifier(5)
    assert net.num_classes == 5
    assert [p.name for p in net.get_parameters()][-1] == "classifier.weight"
    net.reset_classifier(0)
    out = net(ms.Tensor(np.zeros((1, 3, 64, 64), np.float32)))
    assert out.shape == (1, net.num_features)


def test_unknown_model_suggests_closest():
    with pytest.raises(ConfigError, match="unknown model .shufflenet_v2_x3_0.*available: shufflenet_v2_x0_5"):
        create_model("shufflenet_v2_x3_0")


def test_short_names_resolve():
    assert create_model("x0_5").model_name == "shufflenet_v2_x0_5"


def test_none_kwargs_do_not_override_model_defaults():
    net = create_model("shufflenet_v2_x0_5", num_classes=None, in_channels=None)
    assert net.num_classes == 1000


@pytest.mark.parametrize("kwargs, match", [
    (dict(stages_repeats=(4, 8), stages_out_channels=(24, 48, 96, 192, 1024)), "three positive"),
    (dict(stages_repeats=(4, 8, 4), stages_out_channels=(24, 48, 96, 192)), "five ints"),
    (dict(stages_repeats=(4, 8, 4), stages_out_channels=(24, 47, 96, 192, 1024)), "even"),
    (dict(stages_repeats=(4, 8, 4), stages_out_channels=(24, 48, 96, 192, 1024), num_classes=-1),
     "num_classes"),
])
def test_architecture_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShuffleNetV2(**kwargs)


def test_bad_num_classes_is_a_clear_error():
    with pytest.raises(ConfigError, match="num_classes must be >= 0"):
        create_model("shufflenet_v2_x0_5", num_classes=-3)


@pytest.mark.parametrize("alias", ["x1_0", "1.0x", "shufflenet-v2-x1.0", "ShuffleNetV2_x1_0"])
def test_mindcv_style_aliases(alias):
    from shufflenet.models import resolve_model_name

    assert resolve_model_name(alias) == "shufflenet_v2_x1_0"
