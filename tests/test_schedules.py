"""LR schedules: the cosine schedule that ends before the last epoch says so (or stretches)."""
import logging

from shufflenet.train.schedules import build_lr

BASE = {"scheduler": "cosine_decay", "lr": 0.1, "epoch_size": 10, "warmup_epochs": 1,
        "warmup_factor": 0.0, "decay_epochs": 7, "min_lr": 0.0, "lr_epoch_stair": False}


def test_a_schedule_ending_before_the_last_epoch_says_so_in_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="shufflenet.train.schedules"):
        lr = build_lr(dict(BASE), 2)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "ends after epoch 8 of 10" in notes[0] and "--stretch_decay" in notes[0]
    assert (lr[16:] == 0).all() and lr[15] > 0          # MindCV's behaviour kept by default


def test_stretch_decay_spreads_the_schedule_over_every_epoch(caplog):
    with caplog.at_level(logging.WARNING, logger="shufflenet.train.schedules"):
        lr = build_lr(dict(BASE, stretch_decay=True), 2)
    assert not caplog.records
    assert (lr[2:-1] > 0).all() and (lr[2:] == sorted(lr[2:], reverse=True)).all()


def test_a_schedule_that_fits_says_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="shufflenet.train.schedules"):
        build_lr(dict(BASE, epoch_size=8), 2)
    assert not caplog.records
