"""Training batches from MindSpore's C++ data engine (folders and CIFAR-10).

Evaluation does not run here: it is :class:`shufflenet.data.preprocess.EvalTransform`,
the preprocessing every artifact carries (OpenCV's resize is not Pillow's, and the
accuracy validate reports must be the one a deployed artifact gets).

Decode, random-resized crop, flips, colour jitter, normalise and HWC->CHW run
as ``mindspore.dataset.vision`` C++ ops in MindCV's ``create_transforms``
order, off the GIL. What stays in Python is cheap: reading a file's bytes
(with a corrupt-file check) and random erasing, which MindSpore implements
in Python anyway and which we apply per batch with numpy.

Guarantees, and what they cost:

- **Order**: epoch ``e`` visits ``permutation(seed, e)``, rank ``r`` of ``w``
  every ``w``-th sample (:func:`shufflenet.data.pipeline.shard`), as before.
- **Determinism** for a fixed ``(seed, epoch, rank, worker count)``. MindSpore's
  random ops draw from one stream per op instance, and a map op with several
  workers hands rows to whichever worker is free, so its output is not
  reproducible. We run one single-worker pipeline per worker instead: pipeline
  ``k`` makes whole batches ``k, k+W, k+2W, ...`` from its own seeded stream.
  Augmentations therefore depend on the worker count (they did not with the
  per-sample seeds of the Python path).
- **Exact mid-epoch resume**: an epoch is cut into segments of
  ``SEGMENT_STEPS`` steps, each with fresh pipelines seeded by
  ``(seed, epoch, rank, segment, worker)``. Resuming at step ``k`` rebuilds
  segment ``k // SEGMENT_STEPS`` and replays (decodes and drops) at most
  ``SEGMENT_STEPS - 1`` batches. The next segment's pipelines start while the
  current one is consumed, so segment boundaries cost no idle time.
- **Unreadable images** (not an image, truncated JPEG/PNG, undecodable) are
  replaced by the next readable sample and counted, as before; batch shapes
  and step counts do not change.
  The decoder's dump of a refused file (``./abnormal_image.<ext>``) is deleted
  afterwards unless a file of that name was in the working directory before.

The trainer asks for uint8 NHWC batches (``uint8=True``) and normalises them
with :func:`graph_normaliser` where the network runs: the host skips
normalise and the layout change, and a quarter of the bytes cross to the
device. Float32 NCHW batches (MindCV's output) remain the default.
"""
from __future__ import annotations

import functools
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .image_bytes import check_encoded
from .preprocess import load_image
from .transforms import random_erase

log = logging.getLogger(__name__)

SEGMENT_STEPS = 32  # resume replays at most this many batches minus one
PREFETCH = 2  # rows/batches queued between the ops of one pipeline (MindSpore's default: 16)
_MAX_REPLACE = 50

# MindSpore's C++ decoder dumps a file it refuses to "./abnormal_image.<ext>" (a path compiled into
# _c_dataengine; no dataset.config setting moves or stops it, MindSpore 2.3-2.7)
DECODER_DUMP_GLOB = "abnormal_image.*"


class _DecoderDumps:
    """Removes the files the decoder dumped into the working directory during one pass, and only
    those: a file of that name that was there before is the user's and stays."""

    def __init__(self) -> None:
        self.cwd = Path.cwd()
        self.before = {p.name for p in self.cwd.glob(DECODER_DUMP_GLOB)}
        self.started = time.time()

    def clean(self) -> None:
        try:
            if Path.cwd() != self.cwd:  # moved since: cannot tell our dumps from files there
                return
        except OSError:
            return
        for p in self.cwd.glob(DECODER_DUMP_GLOB):
            try:
                if p.name in self.before:
                    if p.stat().st_mtime >= self.started:
                        log.warning("MindSpore's decoder overwrote %s (it dumps refused images "
                                    "there); left in place", p)
                    continue
                if p.is_file() and p.stat().st_mtime >= self.started - 1:
                    p.unlink()
            except OSError:
                pass


def _unwrap(source, i: int):
    """(base source, index in it) through any :class:`Subset` wrappers."""
    while hasattr(source, "index") and hasattr(source, "source"):
        source, i = source.source, int(source.index[i])
    return source, i


def supports(source) -> bool:
    """True when the native engine can read ``source`` (a folder or in-memory arrays)."""
    base, _ = _unwrap(source, 0)
    return hasattr(base, "files") or hasattr(base, "images")


def is_encoded(source) -> bool:
    return hasattr(_unwrap(source, 0)[0], "files")


class _Rows:
    """Random-access rows for one pipeline: ``(bytes or HWC uint8, label)``.

    An unreadable sample is replaced by the next readable one; ``bad`` is
    shared by all pipelines of a loader so a file is read and counted once.
    """

    def __init__(self, source, indices: np.ndarray, skipped, bad: set, errors: list) -> None:
        self.source, self.indices, self.skipped, self.bad = source, indices, skipped, bad
        self.errors = errors  # our own errors, raised again past MindSpore's wrapping
        self.encoded = is_encoded(source)

    def __len__(self) -> int:
        return len(self.indices)

    def _read(self, i: int):
        base, j = _unwrap(self.source, i)
        if not self.encoded:
            image = base.images[j]
            return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        path = base.files[j]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
        return np.frombuffer(check_encoded(data, path), dtype=np.uint8)

    def __getitem__(self, k: int):
        idx = int(self.indices[k])
        n = len(self.source)
        for step in range(min(n, _MAX_REPLACE)):
            j = (idx + step) % n
            if j in self.bad:
                continue
            try:
                return self._read(j), np.int32(self.source.targets[j])
            except DataError as exc:
                self.bad.add(j)
                self.skipped.add(str(exc), key=j)
        error = DataError(f"{_MAX_REPLACE} consecutive unreadable images from index {idx} "
                          f"(first: {self.skipped.first[0] if self.skipped.first else '?'}); "
                          f"is the dataset corrupt?")
        self.errors.append(error)
        raise error


def _inter(name: str):
    from mindspore.dataset.vision import Inter

    return getattr(Inter, str(name).upper(), Inter.BILINEAR)


def train_ops(t, encoded: bool, uint8: bool = False) -> list:
    """MindCV's ``transforms_imagenet_train`` as C++ ops, minus random erasing
    (:class:`BatchEraser`); ``uint8`` stops before HWC->CHW and normalise
    (the network's side does them: :func:`graph_normaliser`).

    ``t`` is a :class:`shufflenet.data.transforms.TrainTransform`.
    """
    from mindspore.dataset import vision

    crop = vision.RandomCropDecodeResize if encoded else vision.RandomResizedCrop
    ops = [crop(t.image_size, scale=tuple(t.scale), ratio=tuple(t.ratio),
                interpolation=_inter(t.interpolation))]
    if t.hflip > 0:
        ops.append(vision.RandomHorizontalFlip(prob=t.hflip))
    if t.vflip > 0:
        ops.append(vision.RandomVerticalFlip(prob=t.vflip))
    if t.color_jitter > 0:
        ops.append(vision.RandomColorAdjust(t.color_jitter, t.color_jitter, t.color_jitter))
    return ops if uint8 else ops + _to_chw_normalised(t)


def _to_chw_normalised(t) -> list:
    """Normalise, then HWC->CHW: MindCV's order. (Transposing the uint8 image
    first gives the same floats but measured no faster here.)"""
    from mindspore.dataset import vision

    return [vision.Normalize(mean=list(t.mean), std=list(t.std)), vision.HWC2CHW()]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _pipeline(rows: _Rows, ops: list, batch_size: int, seed: int | None):
    """One single-worker pipeline and its running iterator."""
    import mindspore.dataset as ds

    # ds.config.set_seed also reseeds Python's and numpy's global RNGs: keep theirs
    saved = (ds.config.get_seed(), random.getstate(), np.random.get_state(),
             ds.config.get_prefetch_size())
    try:
        if seed is not None:
            ds.config.set_seed(seed)
        # W pipelines each hold their queue: a short one per pipeline bounds host memory
        ds.config.set_prefetch_size(PREFETCH)
        data = ds.GeneratorDataset(rows, column_names=["image", "label"], shuffle=False,
                                   num_parallel_workers=1, python_multiprocessing=False)
        data = data.map(ops, input_columns="image", num_parallel_workers=1)
        data = data.batch(batch_size, drop_remainder=False)
        return data.create_tuple_iterator(num_epochs=1, output_numpy=True)
    finally:
        ds.config.set_seed(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])
        ds.config.set_prefetch_size(saved[3])


@dataclass
class _Plan:
    """What one loader delivers: ``batches[s]`` are the source indices of step ``s``."""

    batches: list
    make_ops: object  # () -> op list (fresh instances per pipeline)
    seed_parts: tuple  # (seed, epoch, rank)
    segment_steps: int


class NativeLoader:
    """Batches ``(images, labels int32)`` from ``workers`` C++ pipelines: images float32
    NCHW, normalised, or uint8 NHWC for :meth:`to_network` to normalise.

    Same interface as :class:`shufflenet.data.pipeline.Loader`: ``steps``,
    ``skipped`` and iteration over one epoch's numpy pairs.
    """

    def __init__(self, source, plan: _Plan, start_step: int, workers: int, skipped,
                 erase=None, normalise=None) -> None:
        self.source, self.plan, self.start_step = source, plan, int(start_step)
        self.workers, self.skipped, self.erase = max(1, int(workers)), skipped, erase
        self.normalise = normalise  # graph_normaliser for uint8 NHWC batches, else None
        self.steps = len(plan.batches) - self.start_step
        self._bad: set = set()
        self._errors: list = []

    def to_network(self, images):
        """A batch as the network's float32 NCHW input Tensor."""
        import mindspore as ms

        return ms.Tensor(images) if self.normalise is None else self.normalise(ms.Tensor(images))

    def _segment(self, g: int) -> list:
        """Start the pipelines of segment ``g``; returns them in step order."""
        seg = self.plan.segment_steps
        first, last = g * seg, min((g + 1) * seg, len(self.plan.batches))
        pipes = []
        for k in range(min(self.workers, last - first)):
            steps = list(range(first + k, last, self.workers))
            idx = np.concatenate([self.plan.batches[s] for s in steps])
            bs = len(self.plan.batches[steps[0]])
            if any(len(self.plan.batches[s]) != bs for s in steps[:-1]):
                raise DataError("internal: only a pipeline's last batch may be short")
            seed = _seed(*self.plan.seed_parts, g, k, self.workers)
            pipes.append(_pipeline(_Rows(self.source, idx, self.skipped, self._bad, self._errors),
                                   self.plan.make_ops(), bs, seed))
        return pipes

    def _find_unreadable(self, first: int, end: int) -> int:
        """Decode segment ``[first, end)``'s files with Pillow; mark and count the bad ones."""
        found = 0
        for s in range(first, end):
            for i in self.plan.batches[s]:
                i = int(i)
                base, j = _unwrap(self.source, i)
                if i in self._bad or not hasattr(base, "files"):
                    continue
                try:
                    load_image(base.files[j])
                except DataError as exc:
                    self._bad.add(i)
                    self.skipped.add(str(exc), key=i)
                    found += 1
        return found

    def __iter__(self):
        seg = self.plan.segment_steps
        total = len(self.plan.batches)
        step = self.start_step
        if step >= total:
            return
        g = step // seg
        dumps = _DecoderDumps()
        current, upcoming = self._segment(g), None
        try:
            while step < total:
                first, end = g * seg, min((g + 1) * seg, total)
                if upcoming is None and end < total:
                    upcoming = self._segment(g + 1)  # fills while this segment is consumed
                try:
                    for s in range(first, end):
                        images, labels = next(current[(s - first) % len(current)])
                        if s < step:
                            continue  # replaying up to the resume point
                        if self.erase is not None:
                            images = self.erase(images, s)
                        yield images, labels
                        step = s + 1
                except RuntimeError as exc:
                    if self._errors:
                        raise self._errors[0] from None
                    # a file passed the checks but the C++ decoder refused it: find it,
                    # replace it like any unreadable file, and replay the segment
                    found = self._find_unreadable(first, end)
                    if not found:
                        raise DataError(f"data pipeline failed at step {step}: "
                                        f"{_first_line(exc)}") from None
                    log.warning("MindSpore's decoder refused %d image(s) near step %d; replaced, "
                                "replaying the segment", found, step)
                    _stop(current)
                    dumps.clean()
                    current = self._segment(g)
                    continue
                step = end
                _stop(current)
                current, upcoming, g = upcoming, None, g + 1
        finally:
            _stop(current)
            _stop(upcoming)
            dumps.clean()  # also what a prefetched segment's decoder dumped


def _stop(pipes) -> None:
    for it in pipes or ():
        try:
            it.stop()
        except Exception:  # noqa: BLE001 - best effort on teardown
            pass


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "----" not in ln]
    useful = [ln for ln in lines if "failed" in ln or "Error" in ln]
    return (useful or lines or [type(exc).__name__])[-1][:300]


class BatchEraser:
    """MindCV's random erasing (per sample, after normalise), seeded per step.

    Step ``s`` of an epoch uses ``rng(seed, epoch, rank, s)``: independent of the
    worker count and exact on resume. The rectangle rule is
    :func:`shufflenet.data.transforms.random_erase`. On uint8 NHWC batches the
    fill is the pixel that normalises to ``re_value`` (rounded: within 0.5/std).
    """

    def __init__(self, t, seed: int, epoch: int, rank: int, uint8: bool = False) -> None:
        self.t, self.key, self.uint8 = t, (int(seed), int(epoch), int(rank)), uint8
        self.value = t.re_value
        if uint8:
            pixel = np.asarray(t.mean) + float(t.re_value) * np.asarray(t.std)
            self.value = np.clip(np.round(pixel), 0, 255).astype(np.uint8)[:, None, None]

    def __call__(self, images: np.ndarray, step: int) -> np.ndarray:
        rng = np.random.default_rng([*self.key, int(step), 0xE1A5E])
        hit = rng.random(len(images)) < self.t.re_prob
        if not hit.any():
            return images
        images = np.array(images, copy=True) if not images.flags.writeable else images
        for i in np.flatnonzero(hit):
            chw = images[i].transpose(2, 0, 1) if self.uint8 else images[i]  # a view
            random_erase(chw, rng, self.t.re_scale, self.t.re_ratio, self.value,
                         self.t.re_max_attempts)
        return images


@functools.lru_cache(maxsize=4)
def graph_normaliser(mean: tuple, std: tuple):
    """``f(uint8 NHWC Tensor) -> float32 NCHW``, ``(x - mean) / std``, compiled by MindSpore.

    Runs where the network runs, so uint8 batches (a quarter of the bytes)
    cross to the device and the host skips normalise and the layout change.
    """
    import mindspore as ms
    from mindspore import ops

    shift = ms.Tensor(np.asarray(mean, np.float32))
    scale = ms.Tensor(1.0 / np.asarray(std, np.float32))

    @ms.jit
    def normalise(x):
        return ops.transpose((ops.cast(x, ms.float32) - shift) * scale, (0, 3, 1, 2))

    return normalise


def train_plan(order_batches: list, t, seed: int, epoch: int, rank: int, encoded: bool,
               uint8: bool = False) -> _Plan:
    return _Plan(order_batches, lambda: train_ops(t, encoded, uint8), (seed, epoch, rank),
                 SEGMENT_STEPS)
