"""Recipes, option names and LR schedules: no training, fast."""
from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from shufflenet.config import OPTIONS, make_config
from shufflenet.errors import ConfigError
from shufflenet.recipes import list_recipes, load_recipe, recipe_path
from shufflenet.train.schedules import build_lr

# (recipe, model, lr, warmup, epochs, random-erasing) from MindCV's shufflenetv2 configs
MINDCV = [
    ("shufflenet_v2_0.5_ascend", "shufflenet_v2_x0_5", 0.35, 4, 250, 0.0),
    ("shufflenet_v2_1.0_ascend", "shufflenet_v2_x1_0", 0.4, 5, 300, 0.5),
    ("shufflenet_v2_1.5_ascend", "shufflenet_v2_x1_5", 0.5, 5, 300, 0.5),
    ("shufflenet_v2_2.0_ascend", "shufflenet_v2_x2_0", 0.5, 5, 300, 0.25),
]


@pytest.mark.parametrize("name,model,lr,warmup,epochs,re_prob", MINDCV)
def test_mindcv_recipes_have_mindcv_values(name, model, lr, warmup, epochs, re_prob):
    cfg = make_config(name)
    assert (cfg.model, cfg.lr, cfg.warmup_epochs, cfg.epoch_size, cfg.re_prob) == (
        model, lr, warmup, epochs, re_prob)
    assert cfg.decay_epochs == epochs - warmup
    assert (cfg.opt, cfg.momentum, cfg.weight_decay, cfg.filter_bias_and_bn) == (
        "momentum", 0.9, 4e-5, True)
    assert (cfg.scheduler, cfg.min_lr, cfg.batch_size, cfg.label_smoothing) == (
        "cosine_decay", 0.0, 64, 0.1)
    assert (cfg.amp_level, cfg.loss_scale, cfg.dynamic_loss_scale) == ("O3", 1024, False)
    assert (cfg.hflip, cfg.color_jitter, cfg.interpolation, cfg.crop_pct, cfg.image_resize) == (
        0.5, 0.4, "bilinear", 0.875, 224)
    assert (cfg.scale, cfg.ratio) == ([0.08, 1.0], [0.75, 1.333])
    assert (cfg.mode, cfg.distribute, cfg.val_while_train) == (0, True, True)


def test_recipe_by_name_or_path(tmp_path):
    assert "demo" in list_recipes() and len(list_recipes()) >= 5
    path = recipe_path("shufflenet_v2_1.0_ascend")
    copy = tmp_path / "mine.yaml"
    copy.write_text(path.read_text())
    assert make_config(str(copy)).lr == make_config("shufflenet_v2_1.0_ascend").lr
    assert make_config("shufflenet_v2_1.0_ascend.yaml").model == "shufflenet_v2_x1_0"


def test_unknown_recipe_names_closest():
    with pytest.raises(ConfigError, match="did you mean 'shufflenet_v2_1.0_ascend'"):
        make_config("shufflenet_v2_1.0_ascent")


def test_mindcv_yaml_with_every_key_loads_unchanged(tmp_path):
    """A MindCV recipe using all of MindCV's keys (incl. ModelArts ones) loads as is."""
    keys = {k: o.default for k, o in OPTIONS.items() if not o.ours}
    keys.update({"model": "shufflenet_v2_x0_5", "opt": "momentum", "enable_modelarts": False,
                 "data_url": "/cache/data/", "train_url": "/cache/output/",
                 "weight_decay_filter": "auto"})
    f = tmp_path / "full.yaml"
    f.write_text(yaml.safe_dump(keys))
    cfg = make_config(str(f))
    assert cfg.model == "shufflenet_v2_x0_5" and cfg.weight_decay_filter == "auto"


def test_sectioned_yaml_is_flattened(tmp_path):
    f = tmp_path / "sections.yaml"
    f.write_text("model:\n  model: shufflenet_v2_x0_5\noptimizer:\n  opt: adamw\n  lr: 0.01\n")
    cfg = make_config(str(f))
    assert (cfg.model, cfg.opt, cfg.lr) == ("shufflenet_v2_x0_5", "adamw", 0.01)


@pytest.mark.parametrize("bad,hint", [({"lrr": 0.1}, "'lr'"), ({"epochs": 3}, "'epoch_size'"),
                                      ({"label_smothing": 0.1}, "'label_smoothing'")])
def test_unknown_key_names_closest_valid(bad, hint):
    with pytest.raises(ConfigError, match=f"did you mean {hint}"):
        make_config("demo", bad)


def test_recipe_dict_round_trips_without_run_switches():
    from shufflenet.config import recipe_dict

    cfg = make_config("demo", {"resume": True, "progress": False, "lr": 0.01})
    data = recipe_dict(cfg)
    assert "resume" not in data and "progress" not in data
    again = make_config(dict(cfg))
    assert again.lr == 0.01 and again.recipe == "demo"


def test_dash_spellings_and_types():
    cfg = make_config("demo", {"epoch-size": "3", "--batch-size": 8, "val_while_train": "false",
                               "scale": "0.5,1.0", "mode": "pynative"})
    assert (cfg.epoch_size, cfg.batch_size, cfg.val_while_train, cfg.scale, cfg.mode) == (
        3, 8, False, [0.5, 1.0], 1)


@pytest.mark.parametrize("bad,msg", [({"batch_size": 0}, "batch_size must be positive"),
                                     ({"epoch_size": "ten"}, "cannot use 'ten'"),
                                     ({"opt": "lamb"}, "not one of"),
                                     ({"mixup": 0.2}, "not supported"),
                                     ({"model": "shufflenet_v3"}, "unknown model"),
                                     ({"image_resize": 16}, ">= 32")])
def test_bad_values_are_config_errors(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        make_config("demo", bad)


def test_bad_yaml_is_config_error(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(str(f))


def _cli(args):
    from toolchain.cli import main

    return CliRunner().invoke(main, args)


def test_cli_unknown_option_names_closest():
    res = _cli(["train", "-c", "demo", "--epoch-sise", "2"])
    assert res.exit_code == 2 and "--epoch-size" in res.output


def test_cli_recipe_error_is_one_clean_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("lr: 0.1\nepochs: 3\n")
    res = _cli(["train", "-c", str(f)])
    assert res.exit_code == 1
    assert "did you mean 'epoch_size'" in res.output and "Traceback" not in res.output


def test_cli_missing_data_dir_is_clean_error(tmp_path):
    res = _cli(["train", "-c", "shufflenet_v2_0.5_ascend", "--data_dir", str(tmp_path / "nope"),
                "--distribute", "false", "--device_target", "CPU"])
    assert res.exit_code == 1 and "not found" in res.output and "Traceback" not in res.output


def _cfg(**kw):
    base = {"lr": 0.4, "epoch_size": 10, "warmup_epochs": 2, "warmup_factor": 0.0,
            "decay_epochs": 8, "min_lr": 0.0, "scheduler": "cosine_decay", "decay_rate": 0.1,
            "multi_step_decay_milestones": [3, 6], "lr_epoch_stair": False}
    base.update(kw)
    return base


def test_cosine_with_warmup_per_step():
    lr = build_lr(_cfg(), steps_per_epoch=5)
    assert lr.shape == (50,)
    assert lr[0] == 0.0 and np.isclose(lr[5], 0.2) and np.isclose(lr[10], 0.4)
    mid = 10 + 20  # halfway through the 40 decay steps
    assert np.isclose(lr[mid], 0.2, atol=1e-6)
    assert np.isclose(lr[-1], 0.2 * (1 + math.cos(math.pi * 39 / 40)), atol=1e-6)
    assert np.all(np.diff(lr[10:]) < 0)  # strictly decreasing every step after warmup


def test_step_and_multistep():
    step = build_lr(_cfg(scheduler="step_decay", warmup_epochs=0, decay_epochs=4), 2)
    assert np.allclose(step[[0, 7, 8, 15, 16]], [0.4, 0.4, 0.04, 0.04, 0.004])
    multi = build_lr(_cfg(scheduler="multi_step_decay", warmup_epochs=0), 2)
    assert np.allclose(multi[[5, 6, 11, 12]], [0.4, 0.04, 0.04, 0.004])


# -- unsupported options are refused whatever their value ----------------------
@pytest.mark.parametrize("option", [{"ema": True}, {"ema": 1}, {"cutmix": 1.0}, {"mixup": 1.0},
                                    {"mixup": "1"}, {"aug_repeats": 3}, {"num_cycles": 2},
                                    {"gradient_accumulation_steps": 2}, {"drop_path_rate": 0.1}])
def test_unsupported_option_is_refused_even_when_it_equals_one(option):
    with pytest.raises(ConfigError, match="is not supported by this trainer"):
        make_config("demo", option)


@pytest.mark.parametrize("option", [{"ema": False}, {"cutmix": 0}, {"mixup": "0.0"},
                                    {"aug_repeats": 0}, {"num_cycles": 1},
                                    {"gradient_accumulation_steps": 1}, {"drop_path_rate": None}])
def test_documented_off_values_are_accepted(option):
    make_config("demo", option)
