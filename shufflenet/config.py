"""Training options: MindCV's key names, defaults, types and checks.

One table (:data:`OPTIONS`) drives the YAML loader, the ``train`` CLI options
and the error messages. Keys are MindCV's (``data_dir``, ``ckpt_path``,
``epoch_size``, ``amp_level``, ...), so a MindCV recipe loads unchanged; a
handful of keys are this toolchain's own (marked ``ours``). An unknown key is
a :class:`ConfigError` naming the closest valid one.

>>> cfg = make_config("demo", {"epoch_size": 2})
>>> cfg.model, cfg.epoch_size
('shufflenet_v2_x0_5', 2)
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from .artifact import (
    DEFAULT_CROP_PCT,
    DEFAULT_IMAGE_SIZE,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from .errors import ConfigError
from .recipes import load_recipe


@dataclass(frozen=True)
class Option:
    """One training option: default, type (``bool``/``int``/``float``/``str``/``list``), help."""

    default: Any
    type: str
    help: str
    choices: tuple = ()
    ours: bool = False


def _o(default, type_, help_, choices=(), ours=False):
    return Option(default, type_, help_, tuple(choices), ours)


# MindCV 0.3 `config.py` names and defaults, grouped as there.
OPTIONS: dict[str, Option] = {
    # system
    "mode": _o(0, "int", "0 = graph mode (default), 1 = PyNative.", (0, 1)),
    "distribute": _o(False, "bool", "Data-parallel training (launch with msrun/mpirun)."),
    "val_while_train": _o(False, "bool", "Validate after every val_interval epochs."),
    "val_interval": _o(1, "int", "Validate every N epochs."),
    "log_interval": _o(100, "int", "Refresh the progress line every N steps."),
    "pretrained": _o(False, "bool", "Start from the published MindCV weights."),
    "ckpt_path": _o("", "str", "Start from this checkpoint (weights only; see --resume)."),
    "resume_opt": _o(False, "bool", "With ckpt_path: also restore optimizer state and position."),
    "seed": _o(42, "int", "Seed for weights, data order and augmentation."),
    "device_target": _o("auto", "str", "auto, CPU, GPU or Ascend."),
    # dataset
    "dataset": _o("imagenet", "str", "imagenet (any class-per-folder tree), cifar10, or demo."),
    "data_dir": _o("./", "str", "Dataset root (holds the train/val folders)."),
    "train_split": _o("train", "str", "Training split folder name."),
    "val_split": _o("val", "str", "Validation split folder name."),
    "dataset_download": _o(False, "bool", "Download the dataset (cifar10) if absent."),
    "num_parallel_workers": _o(8, "int", "Data loading workers (capped at the CPU count)."),
    "shuffle": _o(True, "bool", "Shuffle the training data every epoch."),
    "num_samples": _o(None, "int", "Use only the first N samples of each split."),
    "batch_size": _o(128, "int", "Batch size per device."),
    "drop_remainder": _o(True, "bool", "Drop the last incomplete training batch."),
    "aug_repeats": _o(0, "int", "Repeated augmentation (not supported: keep 0)."),
    # augmentation
    "image_resize": _o(DEFAULT_IMAGE_SIZE, "int", "Training/eval crop size."),
    "scale": _o([0.08, 1.0], "list", "RandomResizedCrop area range."),
    "ratio": _o([0.75, 1.333], "list", "RandomResizedCrop aspect range."),
    "hflip": _o(0.5, "float", "Horizontal flip probability."),
    "vflip": _o(0.0, "float", "Vertical flip probability."),
    "color_jitter": _o(0.4, "float", "Brightness/contrast/saturation jitter strength (0 = off)."),
    "interpolation": _o(DEFAULT_INTERPOLATION, "str", "Resize interpolation.",
                        ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")),
    "auto_augment": _o(None, "str", "AutoAugment policy (not supported: keep unset)."),
    "re_prob": _o(0.0, "float", "Random erasing probability."),
    "re_scale": _o([0.02, 0.33], "list", "Random erasing area range."),
    "re_ratio": _o([0.3, 3.3], "list", "Random erasing aspect range."),
    "re_value": _o(0, "float", "Random erasing fill value (after normalisation)."),
    "re_max_attempts": _o(10, "int", "Random erasing attempts."),
    "mean": _o(list(IMAGENET_MEAN), "list", "Per-channel mean (0-255)."),
    "std": _o(list(IMAGENET_STD), "list", "Per-channel std (0-255)."),
    "crop_pct": _o(DEFAULT_CROP_PCT, "float", "Eval: resize to image_resize/crop_pct, centre-crop."),
    "cutmix": _o(0.0, "float", "CutMix (not supported: keep 0)."),
    "cutmix_prob": _o(1.0, "float", "CutMix probability (unused)."),
    "mixup": _o(0.0, "float", "Mixup (not supported: keep 0)."),
    # model
    "model": _o("shufflenet_v2_x1_0", "str", "Model name (see `shufflenet models`)."),
    "num_classes": _o(None, "int", "Classes (default: from the dataset)."),
    "drop_rate": _o(None, "float", "Dropout before the classifier."),
    "drop_path_rate": _o(None, "float", "Drop path (ShuffleNetV2 has none: keep unset)."),
    "amp_level": _o("O0", "str", "O0 fp32, O2/O3 fp16 (Ascend/GPU; CPU trains fp32).",
                    ("O0", "O1", "O2", "O3")),
    "keep_checkpoint_max": _o(10, "int", "Epoch checkpoints kept by the save policy."),
    "ckpt_save_dir": _o("./ckpt", "str", "Run directory: checkpoints and metrics.jsonl."),
    "ckpt_save_interval": _o(1, "int", "Save an epoch checkpoint every N epochs."),
    "epoch_size": _o(90, "int", "Epochs to train."),
    "dataset_sink_mode": _o(True, "bool", "Accepted for MindCV recipes; the loop feeds steps itself."),
    "in_channels": _o(3, "int", "Image channels."),
    "ckpt_save_policy": _o("latest_k", "str", "Which epoch checkpoints to keep.",
                           ("latest_k", "top_k", "none", "None")),
    "ema": _o(False, "bool", "EMA of weights (not supported: keep false)."),
    "ema_decay": _o(0.9999, "float", "EMA decay (unused)."),
    "clip_grad": _o(False, "bool", "Clip gradients by global norm."),
    "clip_value": _o(15.0, "float", "Global-norm clip value."),
    "gradient_accumulation_steps": _o(1, "int", "Gradient accumulation (not supported: keep 1)."),
    # optimizer
    "opt": _o("adam", "str", "Optimizer.", ("momentum", "sgd", "adamw", "adam")),
    "momentum": _o(0.9, "float", "Momentum."),
    "weight_decay": _o(1e-6, "float", "Weight decay."),
    "loss_scale": _o(1.0, "float", "Fixed loss scale (used with fp16 on Ascend/GPU)."),
    "dynamic_loss_scale": _o(False, "bool", "Dynamic loss scale instead of fixed."),
    "use_nesterov": _o(False, "bool", "Nesterov momentum."),
    "filter_bias_and_bn": _o(True, "bool", "Exclude BatchNorm and bias from weight decay."),
    "weight_decay_filter": _o(None, "str", "MindCV >= 0.3 spelling: disable, auto, norm_and_bias.",
                              ("disable", "auto", "norm_and_bias")),
    "eps": _o(1e-10, "float", "Optimizer epsilon."),
    # scheduler
    "scheduler": _o("cosine_decay", "str", "LR schedule (per step).",
                    ("constant", "cosine_decay", "step_decay", "multi_step_decay")),
    "lr": _o(0.001, "float", "Peak learning rate."),
    "min_lr": _o(1e-6, "float", "Final learning rate (cosine)."),
    "warmup_epochs": _o(3, "float", "Linear warmup epochs."),
    "warmup_factor": _o(0.0, "float", "Warmup starts at lr * warmup_factor."),
    "decay_epochs": _o(100, "float", "Cosine decay epochs (after warmup) / step_decay period."),
    "decay_rate": _o(0.9, "float", "Step/multistep decay factor."),
    "multi_step_decay_milestones": _o([30, 60, 90], "list", "Epoch milestones for multi_step_decay."),
    "lr_epoch_stair": _o(False, "bool", "Change the LR once per epoch instead of every step."),
    "num_cycles": _o(1, "int", "Cosine cycles (only 1 supported)."),
    "cycle_decay": _o(1.0, "float", "Cosine cycle decay (unused)."),
    # loss
    "loss": _o("CE", "str", "Loss: CE (cross-entropy).", ("CE", "ce")),
    "label_smoothing": _o(0.0, "float", "Label smoothing."),
    "aux_factor": _o(0.0, "float", "Aux loss factor (unused)."),
    "reduction": _o("mean", "str", "Loss reduction.", ("mean",)),
    # this toolchain's own
    "resume": _o(False, "bool", "Continue the run in ckpt_save_dir from its last checkpoint.",
                 ours=True),
    "ckpt_save_steps": _o(0, "int", "Also refresh the resumable `last` checkpoint every N steps.",
                          ours=True),
    "amp_on_cpu": _o(False, "bool", "Honour amp_level on CPU (default: CPU trains fp32).",
                     ours=True),
    "freeze_bn": _o(False, "bool", "BatchNorm uses its running statistics (fine-tuning).",
                    ours=True),
    "num_threads": _o(None, "int", "CPU threads for MindSpore kernels.", ours=True),
    "cpu_matmul_stem": _o(True, "bool", "CPU: run the stem conv as slices + MatMul (same "
                          "parameters, ~3x faster kernel; see shufflenet/train/fast_stem.py).",
                          ours=True),
    "progress": _o(True, "bool", "Progress bar on stderr.", ours=True),
    "qat": _o(False, "bool", "Quantization-aware fine-tuning of --ckpt_path for onnx-int8 "
              "(docs/qat.md).", ours=True),
    "qat_loss": _o("distill", "str", "What --qat fine-tunes toward: distill (the fp32 "
                   "network's logits on the same batch: int8 that decides as fp32 does) or "
                   "labels (the recipe's loss; docs/qat.md has both measured).",
                   ("distill", "labels"), ours=True),
    "qat_teacher": _o("auto", "str", "With --qat_loss distill, where the fp32 teacher's logits "
                      "come from: cached (computed once per training image, un-augmented, "
                      "as an artifact is fed; no teacher forward per step), live (the teacher "
                      "run on every augmented batch) or auto (cached when they fit in 1 GiB).",
                      ("auto", "cached", "live"), ours=True),
    "time_budget_minutes": _o(None, "float", "Stop after the first epoch that ends past N "
                              "minutes (--resume continues).", ours=True),
    "stretch_decay": _o(False, "bool", "Stretch decay_epochs to fit epoch_size when the schedule "
                        "would end before the last epoch.", ours=True),
    "max_steps_per_epoch": _o(None, "int", "Cut each epoch after N steps (smoke tests).", ours=True),
}

# Keys MindCV recipes may carry that only matter on ModelArts; accepted and ignored.
IGNORED_KEYS = {"enable_modelarts", "multi_data_url", "data_url", "ckpt_url", "train_url", "config"}

# Options that are accepted for recipe compatibility but not implemented: an
# explicit non-default value is an error rather than being silently ignored.
# Each maps to the values that mean "off" (its documented default and its
# spelled-out equivalents); anything else, ``True`` and ``1.0`` included, is refused.
_UNSUPPORTED = {"aug_repeats": (0, 1), "auto_augment": (None, ""), "cutmix": (0.0,),
                "mixup": (0.0,), "ema": (False,), "drop_path_rate": (None, 0.0),
                "gradient_accumulation_steps": (1,), "num_cycles": (1,)}


def _is_off(value, off_values) -> bool:
    # compare type too: True == 1 and 1.0 == 1 in Python, and both mean "on" here
    return any(value is v or (value == v and type(value) is type(v)) for v in off_values)


class TrainConfig(dict):
    """A checked dict of options with attribute access (``cfg.lr``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return dict(self)


def normalize_key(key: str) -> str:
    """``--epoch-size`` / ``epoch-size`` -> ``epoch_size``."""
    return str(key).lstrip("-").replace("-", "_")


def closest_key(key: str) -> str | None:
    match = difflib.get_close_matches(key, list(OPTIONS), n=1, cutoff=0.5)
    return match[0] if match else None


def _bool(key, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise ConfigError(f"option {key}: expected true/false, got {value!r}")


def coerce(key: str, value):
    """Convert ``value`` to the type of option ``key`` or raise :class:`ConfigError`."""
    opt = OPTIONS[key]
    if key == "mode" and isinstance(value, str) and value.lower() in ("graph", "pynative"):
        value = 0 if value.lower() == "graph" else 1
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")
                         and opt.type != "str"):
        return None
    try:
        if opt.type == "bool":
            out = _bool(key, value)
        elif opt.type == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = int(value)
        elif opt.type == "float":
            out = float(value)
        elif opt.type == "list":
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").replace("[", "")
                         .replace("]", "").split(",") if v.strip()]
            out = [float(v) if not float(v).is_integer() or key == "scale" or key == "ratio"
                   else int(float(v)) for v in value]
        else:
            out = "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {key}: cannot use {value!r} as {opt.type}") from None
    if opt.choices and out is not None and out not in opt.choices and out != "":
        raise ConfigError(f"option {key}: {out!r} is not one of {', '.join(map(str, opt.choices))}")
    return out


def check_keys(values: dict, source: str) -> dict:
    """Normalise spellings; unknown keys -> ConfigError naming the closest valid key."""
    out = {}
    for raw, value in values.items():
        key = normalize_key(raw)
        if key in IGNORED_KEYS:
            continue
        if key not in OPTIONS:
            near = closest_key(key)
            hint = f"; did you mean {near!r}?" if near else ""
            raise ConfigError(f"unknown option {raw!r} in {source}{hint}")
        out[key] = coerce(key, value)
    return out


def _validate(cfg: TrainConfig) -> None:
    for key, off_values in _UNSUPPORTED.items():
        if not _is_off(cfg[key], off_values):
            raise ConfigError(f"option {key}={cfg[key]!r} is not supported by this trainer; "
                              f"remove it from the recipe")
    for key in ("batch_size", "epoch_size", "image_resize"):
        if cfg[key] is None or cfg[key] <= 0:
            raise ConfigError(f"option {key} must be positive, got {cfg[key]}")
    if cfg.image_resize < 32:
        raise ConfigError(f"image_resize must be >= 32 for ShuffleNetV2, got {cfg.image_resize}")
    if cfg.num_classes is not None and cfg.num_classes <= 0:
        raise ConfigError(f"num_classes must be positive, got {cfg.num_classes}")
    if not 0 < cfg.crop_pct <= 1:
        raise ConfigError(f"crop_pct must be in (0, 1], got {cfg.crop_pct}")
    if cfg.lr <= 0:
        raise ConfigError(f"lr must be positive, got {cfg.lr}")
    if len(cfg.scale) != 2 or len(cfg.ratio) != 2:
        raise ConfigError("scale and ratio take two numbers each, e.g. [0.08, 1.0]")
    from .models import resolve_model_name

    cfg["model"] = resolve_model_name(cfg.model)


def make_config(recipe=None, overrides: dict | None = None) -> TrainConfig:
    """Defaults <- recipe (name, path or dict) <- overrides; checked.

    >>> make_config("shufflenet_v2_0.5_ascend").lr
    0.35
    """
    cfg = TrainConfig({k: o.default for k, o in OPTIONS.items()})
    cfg["recipe"] = None
    if recipe is not None:
        if isinstance(recipe, dict):
            # a TrainConfig turned back into a dict carries its recipe's name
            values = {k: v for k, v in recipe.items() if k != "recipe"}
            name = recipe.get("recipe") or "recipe"
        else:
            values, name = load_recipe(recipe), str(recipe)
        cfg.update(check_keys(values, f"recipe {name}"))
        cfg["recipe"] = name
    if overrides:
        cfg.update(check_keys({k: v for k, v in overrides.items() if v is not None}, "options"))
    _validate(cfg)
    return cfg


IMAGENET_CLASSES = 1000


def settle_num_classes(cfg: TrainConfig, data_classes: int, explicit: bool = False) -> str | None:
    """Make ``cfg.num_classes`` agree with the training data's class count, before training.

    Unset: the data's count. The ImageNet default of a MindCV recipe (1000) on
    data with another count, not given explicitly: the data's count, with a
    one-line note returned. Any other mismatch: :class:`ConfigError` with the fix.
    """
    n = cfg.get("num_classes")
    if n is None or int(n) == int(data_classes):
        cfg["num_classes"] = int(data_classes)
        return None
    if int(n) == IMAGENET_CLASSES and not explicit:
        cfg["num_classes"] = int(data_classes)
        return (f"recipe {cfg.get('recipe') or ''} says num_classes={n} (ImageNet) but the data has "
                f"{data_classes} classes: training a {data_classes}-class head "
                f"(--set num_classes=N to choose)").replace("recipe  says", "the recipe says")
    raise ConfigError(f"num_classes={n} but the training data has {data_classes} classes: "
                      f"pass --set num_classes={data_classes} (or point data_dir at the "
                      f"{n}-class data)")


# Options that steer one invocation, not what is trained.
_RUN_CONTROL = ("resume", "progress")


def recipe_dict(cfg: TrainConfig) -> dict:
    """The options as plain JSON-able data (stored in checkpoints and the run dir).

    Run-control switches (``resume``, ``progress``) are left out, so a resumed
    run records the same recipe as an uninterrupted one.
    """
    return {k: v for k, v in cfg.items() if k not in _RUN_CONTROL}
