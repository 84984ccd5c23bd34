"""Random-access image sources: class-per-folder trees and in-memory arrays.

A source has ``classes`` (label names), ``targets`` (int32 per sample),
``__len__``, ``load(i) -> PIL image`` (raising :class:`DataError` for an
unreadable file), ``read(i) -> (PIL image, digest)`` (the digest is the
sha256 of the file's bytes, or of an in-memory image's pixels: what
:func:`~shufflenet.data.preprocess.image_set_fingerprint` combines) and
``fingerprint()`` (a cheap listing key: names, sizes and labels, stored in
checkpoints and stage caches; it reads no pixels, so it is not the image-set
fingerprint reports show).

:func:`class_folder_labels` is the one rule for labelling class folders,
used by training, validate, parity and calibration.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from .preprocess import (
    IMAGE_SUFFIXES,
    fingerprint_arrays,
    image_set_fingerprint,
    load_image,
    pixel_digest,
    read_image,
)


def image_set_of(source, indices=None) -> str:
    """:func:`image_set_fingerprint` of ``source`` (or of its samples ``indices``), labelled."""
    indices = range(len(source)) if indices is None else [int(i) for i in indices]
    return image_set_fingerprint([source.digest(i) for i in indices],
                                 [int(source.targets[i]) for i in indices])


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

    def read(self, i: int):
        return read_image(self.files[i])

    def digest(self, i: int) -> str:
        return hashlib.sha256(Path(self.files[i]).read_bytes()).hexdigest()

    def name(self, i: int) -> str:
        return os.path.relpath(self.files[i], self.root)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for f, t in zip(self.files, self.targets):
            h.update(f"{os.path.relpath(f, self.root)}|{os.path.getsize(f)}|{t}\n".encode())
        return h.hexdigest()


def class_folders(root: str | os.PathLike) -> list[str]:
    """The class folder names under ``root`` (sorted; hidden ones skipped)."""
    root = Path(root)
    try:
        return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot read dataset folder {root}: {exc.strerror or exc}") from None


def open_class_folders(root: str | os.PathLike, labels=None) -> "FolderSource":
    """``root/<class>/<images>`` labelled for a model with ``labels`` by
    :func:`class_folder_labels` (by name, else by position where that is right, else refused);
    ``labels=None``: the folders' own sorted names (a training split)."""
    classes = class_folder_labels(class_folders(root), labels) if labels else None
    return FolderSource(root, classes=classes)


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

    def read(self, i: int):
        return self.load(i), self.digest(i)

    def digest(self, i: int) -> str:
        return pixel_digest(self.images[i])

    def name(self, i: int) -> str:
        return str(i)

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

    def read(self, i: int):
        return self.source.read(int(self.index[i]))

    def digest(self, i: int) -> str:
        return self.source.digest(int(self.index[i]))

    def name(self, i: int) -> str:
        return self.source.name(int(self.index[i]))

    @property
    def root(self):
        return getattr(self.source, "root", None)

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
    without names, e.g. MindCV's) keep the positional convention when there
    is one folder per class.

    >>> print(label_position_problem(["dog"], ["cat", "dog"]))
    class folders (dog) do not match the model's labels (cat, dog) by position
    >>> print(label_position_problem(["val"], ["cat"]))
    class folders (val) do not match the model's labels (cat) by position (val not among them)
    >>> label_position_problem(["cat"], ["cat", "dog"]) is None
    True
    """
    labels = list(labels or [])
    names = sorted(folders)
    if not labels or not names:
        return None
    if labels == [str(i) for i in range(len(labels))]:
        if len(names) == len(labels):
            return None
        # a checkpoint without names (MindCV's): only one folder per class reads by position
        return (f"{len(names)} class folders but the model has {len(labels)} classes and no label "
                f"names to match them by ({short(names)})")
    if set(names) <= set(labels) and all(labels.index(n) == i for i, n in enumerate(names)):
        return None
    unknown = [n for n in names if n not in set(labels)]
    among = f" ({short(unknown)} not among them)" if unknown else ""
    return (f"class folders ({short(names)}) do not match the model's labels ({short(labels)}) "
            f"by position{among}")


def short(xs, n: int = 6) -> str:
    """``a, b, c, ...``: the first ``n`` names."""
    xs = list(xs)
    return ", ".join(str(x) for x in xs[:n]) + (", ..." if len(xs) > n else "")
