"""``mindspore.dataset`` pipelines over the sources, deterministic per epoch.

The training order of epoch ``e`` is ``permutation(seed, e)``; rank ``r`` of
``w`` takes every ``w``-th sample of it, so the ranks' batches at step ``s``
together form the single-process batch ``s`` of ``w`` times the size. A run
resumed at step ``k`` of an epoch sees exactly the remaining batches.

Two engines behind one :class:`Loader` interface (``steps``, ``skipped``,
iteration over ``(images, labels)`` numpy pairs):

- ``native`` (training on folders and CIFAR-10): MindSpore's C++ vision ops,
  see :mod:`shufflenet.data.native`; augmentation is a function of
  ``(seed, epoch, rank, worker count)``.
- ``python`` (training on the in-memory demo set, and every evaluation):
  Pillow/numpy in thread workers, each training sample's augmentation seeded
  by ``(seed, epoch, index)``; evaluation is :class:`EvalTransform`, the
  artifact's preprocessing.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import native
from .cifar import download_cifar10, read_cifar10
from .demo import DEMO_CLASSES, demo_arrays
from .folder import ArraySource, Subset, open_class_folders
from .preprocess import EvalTransform
from .transforms import TrainTransform

log = logging.getLogger(__name__)

DATASETS = ("imagenet", "folder", "cifar10", "demo")


def open_source(cfg, split: str, classes: list[str] | None = None):
    """The source for ``split`` of ``cfg.dataset`` (``demo``, ``cifar10``, or a folder tree).

    ``classes``: the model's labels; class folders are read by
    :func:`shufflenet.data.folder.class_folder_labels` (None: by their sorted names).
    """
    name = str(cfg["dataset"]).lower()
    if name == "demo":
        images, labels = demo_arrays("val" if split in ("val", "test") else split,
                                     size=int(cfg["image_resize"]))
        src = ArraySource(images, labels, list(DEMO_CLASSES))
    elif name in ("cifar10", "cifar-10"):
        if cfg.get("dataset_download"):
            download_cifar10(cfg["data_dir"])
        src = read_cifar10(cfg["data_dir"], split)
    elif name in ("imagenet", "folder", "imagefolder"):
        root = Path(cfg["data_dir"]).expanduser()
        if not root.exists():
            raise DataError(f"data_dir not found: {root}")
        if not (root / split).exists():
            raise DataError(f"dataset folder not found: {root / split}")
        src = open_class_folders(root / split, classes)
    else:
        raise DataError(f"unknown dataset {cfg['dataset']!r}; use imagenet (any class-per-folder "
                        f"tree), cifar10 or demo")
    if cfg.get("num_samples"):
        src = Subset(src, cfg["num_samples"])
    return src


class SkipCounter:
    """Counts unreadable images (thread-safe); the trainer reports it per epoch."""
    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        self.first: list[str] = []
        self._seen: set = set()

    def add(self, what: str, key=None) -> None:
        """Count one unreadable image; a ``key`` seen before is not counted twice."""
        with self._lock:
            key = what if key is None else key
            if key in self._seen:
                return
            self._seen.add(key)
            self.count += 1
            if len(self.first) < 3:
                self.first.append(what)


class _Samples:
    """Random-access rows ``(image CHW float32, label int32)`` for GeneratorDataset."""
    def __init__(self, source, order, transform, train: bool, seed: int, epoch: int,
                 skipped: SkipCounter) -> None:
        self.source, self.order, self.transform = source, np.asarray(order), transform
        self.train, self.seed, self.epoch, self.skipped = train, seed, epoch, skipped

    def __len__(self) -> int:
        return len(self.order)

    def _load(self, idx: int):
        # An unreadable image is replaced by the next readable one, so batch
        # shapes and the step count stay fixed; the count is reported.
        n = len(self.source)
        for k in range(min(n, 50)):
            j = (idx + k) % n
            try:
                return self.source.load(j), j
            except DataError as exc:
                self.skipped.add(str(exc), key=j)
        raise DataError(f"50 consecutive unreadable images from index {idx}; is the dataset corrupt?")

    def __getitem__(self, k: int):
        idx = int(self.order[k])
        image, used = self._load(idx)
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, idx])
            x = self.transform(image, rng)
        else:
            x = self.transform(image)
        target = self.source.targets[used]
        return x, (np.int32(target) if np.ndim(target) == 0 else target)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """The sample order of one epoch: a pure function of ``(seed, epoch)``."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 7919]).permutation(n)


def shard(order: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rank ``rank``'s share: every ``world``-th sample, equal length on all ranks."""
    per_rank = len(order) // world
    return order[rank::world][:per_rank]


def num_workers(requested) -> int:
    return max(1, min(int(requested or 1), os.cpu_count() or 1))


@dataclass
class Loader:
    """One epoch's batches: iterate ``(images, labels)`` numpy pairs."""
    dataset: object
    steps: int
    skipped: SkipCounter

    def __iter__(self):
        return self.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)

    def to_network(self, images):
        """A batch as the network's input Tensor."""
        import mindspore as ms

        return ms.Tensor(images)


def _make(samples: _Samples, batch_size: int, drop_remainder: bool, workers: int) -> object:
    import mindspore.dataset as ds

    data = ds.GeneratorDataset(samples, column_names=["image", "label"], shuffle=False,
                               num_parallel_workers=workers, python_multiprocessing=False)
    return data.batch(batch_size, drop_remainder=drop_remainder)


def data_engine(source, cfg) -> str:
    """``native`` (C++ ops) for folders and CIFAR-10, ``python`` for the demo set."""
    if str(cfg.get("dataset", "")).lower() == "demo" or not native.supports(source):
        return "python"
    return "native"


def train_loader(source, cfg, epoch: int, start_step: int = 0, rank: int = 0, world: int = 1,
                 skipped: SkipCounter | None = None, uint8: bool = False):
    """Training batches of ``epoch`` for this rank, starting at ``start_step``.

    ``uint8``: the native engine hands over uint8 NHWC batches and
    ``loader.to_network(images)`` normalises them where the network runs
    (the Python engine ignores it). Consumers feed ``to_network(images)``
    to the network either way.
    """
    bs, order, steps, drop = _epoch_plan(len(source), cfg, epoch, rank, world)
    skipped = skipped or SkipCounter()
    workers = num_workers(cfg["num_parallel_workers"])
    if data_engine(source, cfg) == "native":
        t = TrainTransform.from_config(cfg)
        batches = [order[s * bs:(s + 1) * bs] for s in range(steps)]
        plan = native.train_plan(batches, t, int(cfg["seed"]), epoch, rank,
                                 native.is_encoded(source), uint8)
        eraser = (native.BatchEraser(t, int(cfg["seed"]), epoch, rank, uint8)
                  if t.re_prob > 0 else None)
        normalise = native.graph_normaliser(tuple(t.mean), tuple(t.std)) if uint8 else None
        return native.NativeLoader(source, plan, start_step, workers, skipped, eraser, normalise)
    order = order[start_step * bs: steps * bs]
    samples = _Samples(source, order, TrainTransform.from_config(cfg), True, cfg["seed"], epoch,
                       skipped)
    return Loader(_make(samples, bs, drop, workers), steps - start_step, skipped)


def _epoch_plan(n: int, cfg, epoch: int, rank: int, world: int):
    """``(batch size, this rank's sample order, steps, drop_remainder)`` of one training epoch."""
    bs = int(cfg["batch_size"])
    order = shard(epoch_order(n, cfg["seed"], epoch, cfg["shuffle"]), rank, world)
    drop = bool(cfg["drop_remainder"])
    steps = len(order) // bs if drop else -(-len(order) // bs)
    if cfg.get("max_steps_per_epoch"):
        steps = min(steps, int(cfg["max_steps_per_epoch"]))
    if steps == 0:
        raise DataError(f"training split has {len(order)} images per device, fewer than one "
                        f"batch of {bs}; lower batch_size")
    return bs, order, steps, drop


class _WithTargets:
    """``source`` with a per-image target row in place of its label (``targets[i]``)."""

    def __init__(self, source, targets: np.ndarray):
        if len(targets) != len(source):
            raise DataError(f"{len(targets)} targets for {len(source)} images")
        self.source, self.targets = source, targets

    def __len__(self) -> int:
        return len(self.source)

    def load(self, i: int):
        return self.source.load(i)


@dataclass
class ArrayLoader:
    """One epoch's batches of arrays held in memory: ``(images[b], targets[b])`` per index
    batch ``b`` (the preprocessed images of a fixed, un-augmented training set)."""
    images: np.ndarray
    targets: np.ndarray
    batches: list
    skipped: SkipCounter

    @property
    def steps(self) -> int:
        return len(self.batches)

    def __iter__(self):
        for b in self.batches:
            yield self.images[b], self.targets[b]

    to_network = Loader.to_network


def fixed_loader(source, cfg, targets: np.ndarray, epoch: int, start_step: int = 0,
                 rank: int = 0, world: int = 1, skipped: SkipCounter | None = None,
                 images: np.ndarray | None = None):
    """The training epoch's batches (its order, steps and resume position, as
    :func:`train_loader`) of the images *un-augmented* -- the recipe's eval preprocessing,
    what an artifact is fed -- each with its row of ``targets`` (``[images, ...]`` in
    ``source`` order) as its label: training toward targets computed once per image
    (QAT's cached fp32 teacher logits). ``images``: those preprocessed images already in
    memory, in ``source`` order (nothing is read or decoded again)."""
    bs, order, steps, drop = _epoch_plan(len(source), cfg, epoch, rank, world)
    skipped = skipped or SkipCounter()
    if images is not None:
        if len(images) != len(targets):
            raise DataError(f"{len(targets)} targets for {len(images)} images")
        return ArrayLoader(images, targets, [order[s * bs:(s + 1) * bs]
                                             for s in range(start_step, steps)], skipped)
    samples = _Samples(_WithTargets(source, targets), order[start_step * bs: steps * bs],
                       eval_transform(cfg), False, cfg["seed"], epoch, skipped)
    return Loader(_make(samples, bs, drop, num_workers(cfg["num_parallel_workers"])),
                  steps - start_step, skipped)


def eval_transform(cfg) -> EvalTransform:
    """The recipe's eval preprocessing (what its checkpoints and artifacts record)."""
    return EvalTransform(int(cfg["image_resize"]), float(cfg["crop_pct"]),
                         tuple(cfg["mean"]), tuple(cfg["std"]), str(cfg["interpolation"]))


def eval_loader(source, cfg, batch_size: int | None = None, transform=None):
    """All of ``source`` once, in order, through :class:`EvalTransform` (last batch kept).

    Every source, image files included, goes through the artifact's own
    preprocessing (Pillow, on the host), so validation measures exactly what
    a deployed artifact is fed. MindSpore's C++ resize (OpenCV) is not
    bit-equal to it and once cost 3.3 pp of top-1 between validate and
    parity on the same checkpoint; training augmentation stays on the C++
    engine (:mod:`shufflenet.data.native`).
    """
    bs = int(batch_size or cfg["batch_size"])
    skipped = SkipCounter()
    transform = transform or eval_transform(cfg)
    workers = num_workers(cfg.get("num_parallel_workers"))
    samples = _Samples(source, np.arange(len(source)), transform, False, 0, 0, skipped)
    return Loader(_make(samples, bs, False, workers), -(-len(source) // bs), skipped)


def steps_per_epoch(n: int, cfg, world: int = 1) -> int:
    per_rank = n // world
    bs = int(cfg["batch_size"])
    steps = per_rank // bs if cfg["drop_remainder"] else -(-per_rank // bs)
    if cfg.get("max_steps_per_epoch"):
        steps = min(steps, int(cfg["max_steps_per_epoch"]))
    return steps
