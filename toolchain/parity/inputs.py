"""Inputs of a parity check: real images, streamed batch by batch.

Sources (exactly one):

* ``images=DIR``      -- every image under DIR, unlabelled;
* ``dataset="demo"``  -- the built-in labelled digits (``split`` train/val);
* ``dataset=DIR``     -- ImageNet-style ``DIR[/split]/<class>/*.png`` (labelled
  by subfolder) or a flat folder of images (unlabelled);
* ``random=N``        -- N seeded Gaussian tensors, only on explicit request;
* nothing             -- the real photos shipped in scikit-learn / scikit-image.

Every image is hashed (sha256 of the file bytes, or of the decoded pixels for
in-memory photos) as it streams; :meth:`InputSet.fingerprint` combines the
hashes with the preprocessing config, so a report says exactly what was fed.
"""
from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from shufflenet.data.preprocess import IMAGE_SUFFIXES, list_images
from shufflenet.errors import ConfigError, DataError

__all__ = ["Batch", "InputSet", "resolve_inputs", "source_inputs"]


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
            xs = []
            for load in self._loaders[start:start + batch_size]:
                item, digest = load()
                self.hashes.append(digest)
                xs.append(item if self.preprocessed else transform(item))
            labels = None if self.labels is None else np.asarray(
                self.labels[start:start + batch_size], np.int64)
            yield Batch(np.stack(xs).astype(np.float32), labels, self.names[start:start + batch_size])

    def fingerprint(self, transform_config: dict) -> dict:
        """Digest of every sample hash plus the preprocessing config."""
        import json

        h = hashlib.sha256(json.dumps(transform_config, sort_keys=True).encode())
        for digest in self.hashes:
            h.update(digest.encode())
        return {"kind": self.kind, "source": self.description, "samples": len(self),
                "labelled": self.labelled, "preprocessing": transform_config,
                "sha256": h.hexdigest(),
                "images": [{"name": n, "sha256": d} for n, d in zip(self.names, self.hashes)]}


def _file_loader(path: Path) -> Callable:
    def load():
        from PIL import Image

        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                image = im.convert("RGB")
        except OSError as exc:    # PIL's UnidentifiedImageError is an OSError too
            raise DataError(f"cannot read image {path}: {getattr(exc, 'strerror', None) or exc}") from None
        return image, hashlib.sha256(data).hexdigest()

    return load


def _array_loader(array: np.ndarray) -> Callable:
    def load():
        arr = np.ascontiguousarray(array)
        return arr, hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()

    return load


def _cap(items: list, samples: int | None) -> list:
    return items if samples is None else items[:samples]


def _class_index(folder_classes: list[str], model_labels: list[str] | None,
                 num_classes: int | None, root: Path) -> dict[str, int]:
    """Map subfolder names to the model's class indices: by label name, else sorted order.

    Sorted order is a guess, taken only when the model has no real labels (a
    checkpoint without them reads as ``"0", "1", ...``, e.g. MindCV's ImageNet
    weights against wnid folders). A model with labels and folders it does
    not name is refused: guessed labels would give accuracies of nothing.
    """
    if model_labels and set(folder_classes) <= set(model_labels):
        return {c: model_labels.index(c) for c in folder_classes}
    named = model_labels and list(model_labels) != [str(i) for i in range(len(model_labels))]
    if named:
        unknown = sorted(set(folder_classes) - set(model_labels))
        more = f" +{len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise DataError(f"{root} has class folders that are not the model's labels: "
                        f"{', '.join(unknown[:5])}{more} (labels: {', '.join(model_labels[:5])}"
                        f"{', ...' if len(model_labels) > 5 else ''}); name the folders after the "
                        f"labels, or pass --images for an unlabelled check")
    if num_classes is None or len(folder_classes) == num_classes:
        return {c: i for i, c in enumerate(sorted(folder_classes))}
    hint = ""
    if model_labels:
        hint = f" and their names ({', '.join(sorted(folder_classes)[:3])}, ...) are not the model's labels"
    raise DataError(f"{root} has {len(folder_classes)} class folders but the model has "
                    f"{num_classes} classes{hint}")


def _folder_dataset(root: Path, split: str, samples, model_labels, num_classes) -> InputSet:
    if not root.exists():
        raise DataError(f"dataset folder not found: {root}")
    has_split = (root / split).is_dir()
    if has_split:
        root = root / split
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot read dataset folder {root}: {exc.strerror or exc}") from None
    flat = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not subdirs or flat:
        files = _cap(list_images(root), samples)
        return InputSet("folder", f"{root} (unlabelled)", [_file_loader(p) for p in files],
                        [str(p.relative_to(root)) for p in files])
    names = [d.name for d in subdirs]
    if not has_split and {"train", "val", "test"} & set(names) and not set(names) <= set(model_labels or []):
        raise DataError(f"{root} has no {split}/ split (it has {', '.join(names)}); pass --split "
                        f"with one of them")
    index = _class_index(names, model_labels, num_classes, root)
    files, labels = [], []
    for d in subdirs:
        try:
            found = list_images(d, recursive=True)
        except DataError:
            continue                      # an empty class folder is allowed
        files += found
        labels += [index[d.name]] * len(found)
    if not files:
        raise DataError(f"no images found in the class folders of {root}")
    # interleave classes deterministically so --samples keeps a mix
    order = sorted(range(len(files)), key=lambda i: (hashlib.sha1(str(files[i].relative_to(root))
                                                                  .encode()).hexdigest()))
    order = _cap(order, samples)
    return InputSet("folder", f"{root} (labelled by subfolder)",
                    [_file_loader(files[i]) for i in order],
                    [str(files[i].relative_to(root)) for i in order],
                    labels=[labels[i] for i in order],
                    class_names=sorted(index, key=index.get))


def source_inputs(source, description: str, samples: int | None = None) -> InputSet:
    """A labelled :class:`InputSet` over a ``shufflenet.data`` source (folder, arrays, CIFAR).

    Classes are interleaved (a stratified, seeded order), so ``samples`` keeps
    the class mix. Files are hashed by their bytes, in-memory images by their
    pixels -- the digests calibration records, so overlaps can be found.
    """
    from exporters.calibration import stratified_order

    order = stratified_order(source.targets, seed=0)
    order = _cap(order.tolist(), samples)
    files = getattr(source, "files", None)
    arrays = getattr(source, "images", None)
    loaders, names = [], []
    for i in order:
        if files is not None:
            loaders.append(_file_loader(Path(files[i])))
            root = getattr(source, "root", None)
            names.append(str(Path(files[i]).relative_to(root)) if root else str(files[i]))
        elif arrays is not None:
            loaders.append(_array_loader(arrays[i]))
            names.append(f"{description}/{i}")
        else:
            loaders.append(_array_loader(np.asarray(source.load(int(i)))))
            names.append(f"{description}/{i}")
    return InputSet("dataset", f"{description} (labelled)", loaders, names,
                    labels=[int(source.targets[i]) for i in order],
                    class_names=list(source.classes))


def resolve_inputs(images: str | os.PathLike | None = None, dataset: str | None = None,
                   split: str = "val", samples: int | None = None, random: int | None = None,
                   image_size: int = 224, model_labels: list[str] | None = None,
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
            from shufflenet.data.demo import DEMO_CLASSES, demo_arrays

            if num_classes is not None and num_classes != len(DEMO_CLASSES):
                raise DataError(f"the demo dataset has {len(DEMO_CLASSES)} classes but the model "
                                f"has {num_classes}; use --images or a dataset of its classes")
            pixels, labels = demo_arrays(split, size=image_size)
            pixels, labels = _cap(list(pixels), samples), _cap(labels.tolist(), samples)
            return InputSet("demo", f"demo digits ({split})", [_array_loader(p) for p in pixels],
                            [f"demo/{split}/{i}" for i in range(len(pixels))], labels=labels,
                            class_names=list(DEMO_CLASSES))
        return _folder_dataset(Path(dataset), split, samples, model_labels, num_classes)
    from shufflenet.data.preprocess import sample_photos

    photos = _cap(sample_photos(), samples)
    return InputSet("photos", "sample photos shipped with scikit-learn/scikit-image",
                    [_array_loader(np.asarray(img)) for _, img in photos], [n for n, _ in photos])
