"""Random-access image sources: class-per-folder trees and in-memory arrays.

A source has ``classes`` (label names), ``targets`` (int32 per sample),
``__len__``, ``load(i) -> PIL image`` (raising :class:`DataError` for an
unreadable file) and ``fingerprint()`` (identifies the data, stored in
checkpoints).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .preprocess import IMAGE_SUFFIXES, fingerprint_arrays, load_image


class FolderSource:
    """``root/<class>/<image>``, classes sorted by name (ImageNet layout).

    >>> src = FolderSource("/data/imagenet/train")   # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike, classes: list[str] | None = None) -> None:
        root = Path(root)
        if not root.exists():
            raise DataError(f"dataset folder not found: {root}")
        if not root.is_dir():
            raise DataError(f"dataset path is not a folder: {root}")
        found = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not found:
            raise DataError(f"{root} has no class folders (expected {root}/<class>/<image files>)")
        self.classes = list(classes) if classes is not None else found
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = [c for c in found if c not in index]
        if unknown:
            raise DataError(f"{root} has class folders not in the training classes: "
                            f"{', '.join(unknown[:5])}")
        files, targets = [], []
        for name in found:
            for dirpath, _, fnames in os.walk(root / name):
                for f in sorted(fnames):
                    if f.lower().endswith(IMAGE_SUFFIXES):
                        files.append(os.path.join(dirpath, f))
                        targets.append(index[name])
        if not files:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...) under {root}")
        order = np.argsort(np.array(files), kind="stable")
        self.files = [files[i] for i in order]
        self.targets = np.asarray(targets, dtype=np.int32)[order]
        self.root = root

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int):
        return load_image(self.files[i])

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f, t in zip(self.files, self.targets):
            h.update(f"{os.path.relpath(f, self.root)}|{os.path.getsize(f)}|{t}\n".encode())
        return h.hexdigest()


class ArraySource:
    """Images held in memory: uint8 ``[N, H, W, 3]`` (or ``[N, H, W]``) and int labels."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: list[str]) -> None:
        if len(images) == 0:
            raise DataError("dataset split is empty")
        if len(images) != len(targets):
            raise DataError(f"{len(images)} images but {len(targets)} labels")
        self.images = images
        self.targets = np.asarray(targets, dtype=np.int32)
        self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.images)

    def load(self, i: int):
        from PIL import Image

        return Image.fromarray(self.images[i]).convert("RGB")

    def fingerprint(self) -> str:
        return fingerprint_arrays([self.images, self.targets])


class Subset:
    """``n`` evenly spaced samples of a source (``num_samples``), so every class stays in."""

    def __init__(self, source, n: int) -> None:
        self.source, self.n = source, max(1, min(int(n), len(source)))
        self.index = np.unique(np.round(np.linspace(0, len(source) - 1, self.n)).astype(np.int64))
        self.n = len(self.index)
        self.classes = source.classes
        self.targets = source.targets[self.index]

    def __len__(self) -> int:
        return self.n

    def load(self, i: int):
        return self.source.load(int(self.index[i]))

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.source.fingerprint()}:{self.n}".encode()).hexdigest()


def class_folder_labels(folders, labels) -> list | None:
    """The ``classes`` to read class ``folders`` with, for a model with ``labels``.

    Folders that are all among the labels are read by name (any subset, any
    order): the labels are returned. Otherwise they can only be read by sorted
    position (None), which is refused with :class:`DataError` where it would
    give wrong labels (:func:`label_position_problem`).

    >>> class_folder_labels(["dog", "cat"], ["ant", "cat", "dog"])
    ['ant', 'cat', 'dog']
    >>> class_folder_labels(["n01", "n02"], ["0", "1"]) is None
    True
    """
    labels = list(labels or [])
    if folders and labels and set(folders) <= set(labels):
        return labels
    problem = label_position_problem(folders, labels)
    if problem:
        raise DataError(problem)
    return None


def label_position_problem(folders, labels) -> str | None:
    """Why class folders read by sorted position would get wrong labels (None: they would not).

    :class:`FolderSource` without ``classes`` labels a folder by its sorted
    position; that is right only where each folder's position is its label's
    index in ``labels`` (the model's). Labels ``"0", "1", ...`` (a checkpoint
    without names, e.g. MindCV's) keep the positional convention.

    >>> label_position_problem(["train", "val"], ["cat", "dog"])
    "class folders (train, val) do not match the model's labels (cat, dog) by position"
    >>> label_position_problem(["cat"], ["cat", "dog"]) is None
    True
    """
    labels = list(labels or [])
    names = sorted(folders)
    if not labels or not names or labels == [str(i) for i in range(len(labels))]:
        return None
    if set(names) <= set(labels) and all(labels.index(n) == i for i, n in enumerate(names)):
        return None

    def short(xs):
        return ", ".join(xs[:6]) + (", ..." if len(xs) > 6 else "")

    return (f"class folders ({short(names)}) do not match the model's labels ({short(labels)}) "
            f"by position")
