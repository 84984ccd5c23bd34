"""Inputs of a parity check: real images, streamed batch by batch.

Sources (exactly one):

* ``images=DIR``      -- every image under DIR, unlabelled;
* ``dataset="demo"``  -- the built-in labelled digits (``split`` train/val);
* ``dataset=DIR``     -- ImageNet-style ``DIR[/split]/<class>/*.png`` (labelled
  by :func:`shufflenet.data.folder.class_folder_labels`, the rule training,
  validate and calibration use) or a flat folder of images (unlabelled);
* ``random=N``        -- N seeded Gaussian tensors, only on explicit request;
* nothing             -- the real photos shipped in scikit-learn / scikit-image.

Labelled data is read through :mod:`shufflenet.data` sources (the demo set
and class folders are opened by :func:`shufflenet.data.pipeline.open_source`,
as validate opens them), images through
:func:`shufflenet.data.preprocess.read_image`, and batches made by the
artifact's :class:`~shufflenet.data.preprocess.EvalTransform`. Every image is
hashed as it streams (the file's bytes, or the pixels of an in-memory image);
:meth:`InputSet.fingerprint` names the set with
:func:`~shufflenet.data.preprocess.image_set_fingerprint`, the number
validate, the pipeline and calibration show for the same images.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from exporters.calibration import stratified_order
from shufflenet.artifact import DEFAULT_IMAGE_SIZE
from shufflenet.data.demo import DEMO_CLASSES
from shufflenet.data.folder import class_folders, open_class_folders
from shufflenet.data.pipeline import open_source
from shufflenet.data.preprocess import (
    IMAGE_SUFFIXES,
    image_set_fingerprint,
    list_images,
    pixel_digest,
    read_image,
    sample_photos,
)
from shufflenet.errors import ConfigError, DataError

__all__ = ["Batch", "InputSet", "dataset_inputs", "resolve_inputs", "source_inputs"]


@dataclass
class Batch:
    x: np.ndarray                   # (N, 3, H, W) float32, preprocessed
    labels: np.ndarray | None       # (N,) int or None
    names: list


class InputSet:
    """A lazily loaded, hashed sequence of samples."""
    def __init__(self, kind: str, description: str, loaders: list[Callable], names: list[str],
                 labels: list[int] | None = None, class_names: list[str] | None = None,
                 preprocessed: bool = False) -> None:
        self.kind = kind
        self.description = description
        self._loaders = loaders
        self.names = names
        self.labels = labels
        self.class_names = class_names
        self.preprocessed = preprocessed    # random tensors bypass the transform
        self.hashes: list[str] = []

    def __len__(self) -> int:
        return len(self._loaders)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def batches(self, transform, batch_size: int) -> Iterator[Batch]:
        """Yield preprocessed batches; only one batch of pixels is held at a time."""
        self.hashes = []
        for start in range(0, len(self), batch_size):
            items = []
            for load in self._loaders[start:start + batch_size]:
                item, digest = load()
                self.hashes.append(digest)
                items.append(item)
            x = (np.stack(items).astype(np.float32) if self.preprocessed
                 else transform.batch(items))
            labels = None if self.labels is None else np.asarray(
                self.labels[start:start + batch_size], np.int64)
            yield Batch(x, labels, self.names[start:start + batch_size])

    def fingerprint(self, transform_config: dict) -> dict:
        """What was fed: the image set's fingerprint (:func:`image_set_fingerprint` of the
        images read, with their labels) and, beside it, the preprocessing."""
        return {"kind": self.kind, "source": self.description, "samples": len(self),
                "labelled": self.labelled, "preprocessing": transform_config,
                "sha256": image_set_fingerprint(self.hashes, self.labels if self.labelled
                                                else None),
                "images": [{"name": n, "sha256": d} for n, d in zip(self.names, self.hashes)]}


def _file_loader(path: Path) -> Callable:
    return lambda: read_image(path)


def _array_loader(array: np.ndarray) -> Callable:
    return lambda: (np.ascontiguousarray(array), pixel_digest(array))


def _source_loader(source, i: int) -> Callable:
    return lambda: source.read(i)


def _cap(items: list, samples: int | None) -> list:
    return items if samples is None else items[:samples]


def _folder_dataset(root: Path, split: str, samples, model_labels) -> InputSet:

    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    has_split = (root / split).is_dir()
    if has_split:
        root = root / split
    names = class_folders(root)
    flat = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not names or flat:
        files = _cap(list_images(root), samples)
        return InputSet("folder", f"{root} (unlabelled)", [_file_loader(p) for p in files],
                        [str(p.relative_to(root)) for p in files])
    if not has_split and {"train", "val", "test"} & set(names) and not set(names) <= set(model_labels or []):
        raise DataError(f"{root} has no {split}/ split (it has {', '.join(names)}); pass --split "
                        f"with one of them")
    try:
        source = open_class_folders(root, model_labels)
    except DataError as exc:
        raise DataError(f"{root}: {exc}; name the folders after the labels, or pass --images "
                        f"for an unlabelled check") from None
    where = f"{root.parent} (split {split})" if has_split else str(root)
    return source_inputs(source, where, samples)


def source_inputs(source, description: str, samples: int | None = None) -> InputSet:
    """A labelled :class:`InputSet` over a ``shufflenet.data`` source (folder, arrays, CIFAR).

    Classes are interleaved (a stratified, seeded order), so ``samples`` keeps
    the class mix. Each image is read by the source's ``read`` (the decode
    validate uses) with its digest: the file's bytes, or an in-memory image's
    pixels -- the digests calibration records, so overlaps can be found.
    """
    order = _cap(stratified_order(source.targets, seed=0).tolist(), samples)
    name = getattr(source, "name", None)
    return InputSet("dataset", f"{description} (labelled)",
                    [_source_loader(source, int(i)) for i in order],
                    [name(int(i)) if name else f"{description}/{i}" for i in order],
                    labels=[int(source.targets[i]) for i in order],
                    class_names=list(source.classes))


def dataset_inputs(dataset: str, data_dir=None, split: str = "val", samples: int | None = None,
                   image_size: int = DEFAULT_IMAGE_SIZE, model_labels: list[str] | None = None,
                   num_classes: int | None = None) -> InputSet:
    """The labelled split ``split`` of a recipe dataset (``demo``, ``cifar10``, ``imagenet``
    with ``data_dir``), opened as validate opens it: the one way parity and the pipeline
    read a named dataset."""

    name = str(dataset).lower()
    if name == "demo":
        if num_classes is not None and num_classes != len(DEMO_CLASSES):
            raise DataError(f"the demo dataset has {len(DEMO_CLASSES)} classes but the model "
                            f"has {num_classes}; use --images or a dataset of its classes")
    view = {"dataset": name, "data_dir": data_dir, "image_resize": int(image_size),
            "dataset_download": False}
    source = open_source(view, split, classes=model_labels)
    where = {"demo": "demo digits"}.get(name, str(data_dir or name))
    return source_inputs(source, f"{where} (split {split})", samples)


def resolve_inputs(images: str | os.PathLike | None = None, dataset: str | None = None,
                   split: str = "val", samples: int | None = None, random: int | None = None,
                   image_size: int = DEFAULT_IMAGE_SIZE, model_labels: list[str] | None = None,
                   num_classes: int | None = None, seed: int = 0) -> InputSet:
    """Pick the one input source the caller asked for (see the module docstring)."""
    given = [n for n, v in (("images", images), ("dataset", dataset), ("random", random))
             if v is not None]
    if len(given) > 1:
        raise ConfigError(f"give only one input source, got {' and '.join(given)}")
    if samples is not None and samples <= 0:
        raise ConfigError(f"samples must be positive, got {samples}")
    if random is not None:
        if random <= 0:
            raise ConfigError(f"--random needs a positive count, got {random}")
        rng = np.random.RandomState(seed)
        arrays = [rng.standard_normal((3, image_size, image_size)).astype(np.float32)
                  for _ in range(random)]
        return InputSet("random", f"{random} Gaussian tensors (seed {seed})",
                        [_array_loader(a) for a in arrays], [f"random/{i}" for i in range(random)],
                        preprocessed=True)
    if images is not None:
        root = Path(images)
        files = _cap(list_images(root), samples)
        return InputSet("images", str(root), [_file_loader(p) for p in files],
                        [str(p.relative_to(root)) for p in files])
    if dataset is not None:
        if str(dataset) == "demo":
            return dataset_inputs("demo", split=split, samples=samples, image_size=image_size,
                                  model_labels=model_labels, num_classes=num_classes)
        return _folder_dataset(Path(dataset), split, samples, model_labels)
    photos = _cap(sample_photos(), samples)
    return InputSet("photos", "sample photos shipped with scikit-learn/scikit-image",
                    [_array_loader(np.asarray(img)) for _, img in photos], [n for n, _ in photos])
