"""The training core: ``train(config) -> TrainResult``.

>>> from shufflenet.train import train
>>> result = train("demo", {"ckpt_save_dir": "runs/demo"})   # doctest: +SKIP
>>> result.best_ckpt, result.metrics["val_top1"]              # doctest: +SKIP
"""
from .trainer import TrainResult, train

__all__ = ["TrainResult", "train"]
