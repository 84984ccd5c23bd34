"""Learning-rate schedules as one value per training step (MindCV's formulas).

Every schedule starts with a linear warmup from ``lr * warmup_factor`` to
``lr`` over ``warmup_epochs``; then ``cosine_decay`` falls to ``min_lr``
over ``decay_epochs``, ``step_decay`` multiplies by ``decay_rate`` every
``decay_epochs``, ``multi_step_decay`` at each milestone epoch, and
``constant`` stays. The array is indexed by global step, so resuming at step
``k`` resumes the schedule exactly.
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)


def decay_epochs(cfg) -> float:
    """The cosine schedule's ``decay_epochs``: the recipe's (MindCV: the LR then stays at
    ``min_lr`` for the epochs after it, said in one line), or with ``stretch_decay`` the
    epochs left after warmup when the recipe's would end before the last epoch."""
    epochs = int(cfg["epoch_size"])
    warm = float(cfg.get("warmup_epochs") or 0)
    decay = float(cfg.get("decay_epochs") or epochs)
    if cfg["scheduler"] != "cosine_decay" or warm + decay >= epochs:
        return decay
    if cfg.get("stretch_decay"):
        return epochs - warm
    log.warning("the LR schedule ends after epoch %g of %d (warmup_epochs %g + decay_epochs %g): "
                "the last epochs train at min_lr %g, as in MindCV; --stretch_decay spreads it "
                "over all epochs", warm + decay, epochs, warm, decay, float(cfg.get("min_lr") or 0))
    return decay


def build_lr(cfg, steps_per_epoch: int) -> np.ndarray:
    """float32 ``[epoch_size * steps_per_epoch]`` learning rates.

    >>> build_lr({"scheduler": "constant", "lr": 0.1, "epoch_size": 1, "warmup_epochs": 0,
    ...           "warmup_factor": 0.0, "lr_epoch_stair": False}, 2).tolist()
    [0.10000000149011612, 0.10000000149011612]
    """
    lr, epochs, spe = float(cfg["lr"]), int(cfg["epoch_size"]), int(steps_per_epoch)
    total = epochs * spe
    stair = bool(cfg.get("lr_epoch_stair"))
    warm_steps = int(round(float(cfg.get("warmup_epochs") or 0) * spe))
    factor = float(cfg.get("warmup_factor") or 0.0)
    name = cfg["scheduler"]
    decay_len = decay_epochs(cfg) if name == "cosine_decay" else None
    out = np.empty(total, dtype=np.float64)
    for i in range(total):
        t = (i // spe) * spe if stair else i  # position used by the formula
        epoch = i / spe
        if t < warm_steps:
            out[i] = lr * (factor + (1.0 - factor) * t / warm_steps)
            continue
        if name == "constant":
            out[i] = lr
        elif name == "cosine_decay":
            min_lr = float(cfg.get("min_lr") or 0.0)
            decay = max(1, int(round(decay_len * spe)))
            k = min(t - warm_steps, decay)
            out[i] = min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * k / decay))
        elif name == "step_decay":
            period = float(cfg.get("decay_epochs") or 1)
            out[i] = lr * float(cfg["decay_rate"]) ** math.floor(math.floor(epoch) / period)
        elif name == "multi_step_decay":
            passed = sum(1 for m in cfg["multi_step_decay_milestones"] if math.floor(epoch) >= m)
            out[i] = lr * float(cfg["decay_rate"]) ** passed
        else:
            raise ConfigError(f"unknown scheduler {name!r}; use cosine_decay, step_decay, "
                              f"multi_step_decay or constant")
    return out.astype(np.float32)
