"""Real images for int8 calibration, preprocessed exactly as at evaluation.

Where the images come from, first match wins:

1. ``calib_dir``: a folder -- class subfolders (labelled) or flat (unlabelled);
2. ``dataset``: ``demo`` / ``demo:train`` / ``demo:val``, a dataset folder
   (its ``train`` split when it has one), or ``photos``;
3. the checkpoint's own training split, from its metadata (``recipe``:
   ``dataset``, ``data_dir``, ``train_split``) when that data is reachable;
4. the stand-in photos shipped with scikit-learn/scikit-image -- the last
   resort, and then labelled everywhere: :data:`STAND_IN_NOTE`.

From a labelled source a stratified, seeded sample is drawn and split in two
disjoint parts: the *calibration* images (activation ranges) and a
*held-out* part the accuracy-aware search measures its drop on. Neither ever
comes from a validation split unless the caller names one explicitly, so the
parity check on val stays independent.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shufflenet.artifact import DEFAULT_IMAGE_SIZE
from shufflenet.data.folder import class_folders, open_class_folders
from shufflenet.data.pipeline import open_source
from shufflenet.data.preprocess import (
    EvalTransform,
    image_set_fingerprint,
    list_images,
    load_image,
    pixel_digest,
    sample_photos,
)
from shufflenet.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DATASETS = ("demo", "demo:train", "demo:val", "photos")
STAND_IN_NOTE = "calibrated on stand-in photos: accuracy unverified"
DEFAULT_SAMPLES = 256          # calibration images (all when the split is smaller)
DEFAULT_HELDOUT = 128          # held-out images for the accuracy budget
MIN_UNLABELLED_HELDOUT = 24    # below this an unlabelled held-out part says nothing


@dataclass
class CalibrationData:
    """Preprocessed calibration images, the held-out part, and where they came from."""

    images: np.ndarray                       # (N, C, S, S) float32
    heldout: np.ndarray | None               # (M, C, S, S) float32, disjoint from ``images``
    heldout_labels: np.ndarray | None        # (M,) int64 or None (unlabelled)
    description: dict = field(default_factory=dict)

    @property
    def stand_in(self) -> bool:
        return bool(self.description.get("stand_in"))


def stratified_order(targets, seed: int = 0) -> np.ndarray:
    """All indices, ordered so that every prefix holds each class in proportion.

    Each class is shuffled with ``seed``; index ``i`` of a class of size
    ``n_c`` gets the key ``(i + 0.5) / n_c``, and indices are sorted by key
    (ties by class), so taking the first ``k`` is a stratified sample.

    >>> stratified_order([0, 0, 0, 0, 1, 1], seed=0).tolist()[:3]   # 2:1 as in the data
    [3, 4, 0]
    """
    targets = np.asarray(targets)
    rng = np.random.RandomState(seed)
    keys, order = [], []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        idx = idx[rng.permutation(len(idx))]
        keys += [((i + 0.5) / len(idx), int(c)) for i in range(len(idx))]
        order += idx.tolist()
    ranked = sorted(range(len(order)), key=lambda k: keys[k])
    return np.asarray([order[k] for k in ranked], dtype=np.int64)


def split_counts(total: int, samples: int, heldout: int, labelled: bool) -> tuple[int, int]:
    """``(calibration, held-out)`` sizes for a split of ``total`` images."""
    if total <= 0:
        return 0, 0
    if total >= samples + heldout:
        h = heldout
    else:
        h = min(heldout, total // 3)          # keep two thirds for the ranges
    if not labelled and h < MIN_UNLABELLED_HELDOUT:
        h = 0
    return min(samples, total - h), h


class _Listed:
    """Unlabelled image files (a flat folder)."""

    def __init__(self, files):
        self.files, self.targets, self.classes = list(files), None, None

    def __len__(self):
        return len(self.files)

    def load(self, i):
        return load_image(self.files[i])

    def digest(self, i) -> str:
        # the digest every source gives (shufflenet.data.folder): the file's bytes
        return hashlib.sha256(Path(self.files[i]).read_bytes()).hexdigest()


def _folder_source(root: Path, description: str, labels=None):
    """A class-per-folder tree (labelled) or a flat folder (unlabelled).

    Class folders are labelled as :func:`shufflenet.data.folder.class_folder_labels`
    says: by name when they are among the model's ``labels``, else by sorted
    position where that is right; otherwise refused, since wrong labels would
    measure the held-out drop against nothing.
    """
    if not root.is_dir():
        raise DataError(f"calibration folder not found: {root}")
    if class_folders(root):
        try:
            src = open_class_folders(root, labels)
        except DataError as exc:
            raise DataError(f"calibration folder {root}: {exc}; name each class folder after "
                            "its label (or calibrate on a flat folder of images)") from None
        return src, {"kind": "folder", "source": description, "labelled": True}
    return _Listed(list_images(root)), {"kind": "folder", "source": description, "labelled": False}


def _training_source(meta: dict):
    """The checkpoint's training split when its metadata names one that is reachable."""
    recipe = meta.get("recipe") or {}
    name = str(recipe.get("dataset") or "").lower()
    if not name:
        return None, "the checkpoint's metadata names no training dataset"

    split = recipe.get("train_split") or "train"
    cfg = {"dataset": name, "data_dir": recipe.get("data_dir"),
           "image_resize": int(meta.get("image_size") or recipe.get("image_resize")
                               or DEFAULT_IMAGE_SIZE),
           "dataset_download": False}
    try:
        src = open_source(cfg, split)
    except (DataError, OSError, TypeError, KeyError) as exc:
        where = recipe.get("data_dir") or name
        return None, f"the checkpoint's training data ({where}, split {split}) is not reachable: {exc}"
    where = "demo digits" if name == "demo" else f"{recipe.get('data_dir')}"
    return src, {"kind": "train-split", "source": f"{where} (split {split})",
                 "dataset": name, "split": split, "labelled": True}


def _named_source(dataset: str, image_size: int, labels=None):
    key = dataset.lower()
    if key.startswith("demo"):
        split = key.split(":")[1] if ":" in key else "train"
        # the demo set as validate and parity open it (the same pixels, the same digests)
        src = open_source({"dataset": "demo", "image_resize": image_size}, split)
        return src, {
            "kind": "train-split" if split == "train" else "dataset",
            "source": f"demo digits (split {split})", "dataset": key, "split": split,
            "labelled": True}
    root = Path(dataset).expanduser()
    if not root.exists():
        raise ConfigError(f"unknown calibration dataset {dataset!r}; use one of "
                          f"{', '.join(DATASETS)}, a dataset folder, or --calib DIR")
    train = root / "train"
    if train.is_dir():
        src, desc = _folder_source(train, f"{root} (split train)", labels)
        desc.update(kind="train-split", split="train")
        return src, desc
    return _folder_source(root, str(root), labels)


def check_dataset(dataset: str) -> None:
    """Raise :class:`ConfigError` now for a calibration ``dataset`` that cannot resolve."""
    key = str(dataset).lower()
    if key in DATASETS or Path(str(dataset)).expanduser().is_dir():
        return
    raise ConfigError(f"unknown calibration dataset {dataset!r}; use one of "
                      f"{', '.join(DATASETS)}, a dataset folder, or --calib DIR")


def _stand_in(transform, samples: int, in_channels: int, reason: str) -> CalibrationData:
    photos = sample_photos()[:samples]
    digests = [pixel_digest(np.asarray(img)) for _, img in photos]
    x = _stack(transform, [img for _, img in photos], in_channels)
    desc = {"kind": "stand-in", "source": "stand-in photos shipped with scikit-learn/scikit-image",
            "stand_in": True, "note": STAND_IN_NOTE, "reason": reason, "labelled": False,
            "samples": len(photos), "heldout_samples": 0}
    desc.update(_fingerprints(digests, [], None, None))
    return CalibrationData(x, None, None, desc)


def _stack(transform, images, in_channels: int) -> np.ndarray:
    """The images through the artifact's eval preprocessing, as validate and parity feed them."""
    if not images:
        raise DataError("no calibration images")
    return transform.batch(images, in_channels)


def _fingerprints(calib: list, heldout: list, calib_labels, heldout_labels) -> dict:
    # the one image-set fingerprint (the number parity and validate show for the same images);
    # short per-image digests let a pipeline prove calibration and parity never overlap
    return {"fingerprint": image_set_fingerprint(calib, calib_labels),
            "heldout_fingerprint": (image_set_fingerprint(heldout, heldout_labels) if heldout
                                    else None),
            "images_sha256": [d[:16] for d in calib + heldout]}


def calibration_data(source, calib_dir=None, dataset: str | None = None,
                     samples: int = DEFAULT_SAMPLES, heldout: int = DEFAULT_HELDOUT,
                     seed: int = 0, train_data: dict | None = None) -> CalibrationData:
    """Calibration and held-out images for ``source`` (an :class:`ExportSource`).

    ``calib_dir`` / ``dataset`` as in the module docstring; neither given:
    ``train_data`` (``{"dataset", "data_dir", "train_split"}``, e.g. from a
    pipeline's recipe) or else the checkpoint's own training split, when
    reachable; else the stand-in photos. ``heldout=0`` keeps every image for
    calibration.

    >>> data = calibration_data(load_source("best.ckpt"))      # doctest: +SKIP
    >>> data.description["kind"], data.images.shape             # doctest: +SKIP
    ('train-split', (256, 3, 64, 64))
    """
    if samples is None or int(samples) < 1:
        raise ConfigError(f"calibration samples must be >= 1, got {samples}")
    # the artifact's contract: the metadata the export writes, read as every consumer reads it
    transform = EvalTransform.from_metadata({**source.preprocess, "image_size": source.image_size})
    if calib_dir is not None:
        src, desc = _folder_source(Path(calib_dir), str(calib_dir), source.labels)
    elif dataset is not None and dataset.lower() == "photos":
        return _stand_in(transform, samples, source.in_channels, "asked for (--dataset photos)")
    elif dataset is not None:
        src, desc = _named_source(dataset, source.image_size, source.labels)
    else:
        meta = source.checkpoint_meta
        if train_data:
            meta = dict(meta, recipe=dict(train_data))
        src, desc = _training_source(meta)
        if src is None:
            log.warning("int8: %s; %s", desc, STAND_IN_NOTE)
            return _stand_in(transform, samples, source.in_channels, desc)
    labelled = getattr(src, "targets", None) is not None
    n_cal, n_held = split_counts(len(src), int(samples), int(heldout), labelled)
    order = (stratified_order(src.targets, seed) if labelled
             else np.random.RandomState(seed).permutation(len(src)))
    held_idx, cal_idx = order[:n_held], order[n_held:n_held + n_cal]

    def load(indices):
        return _stack(transform, [src.load(int(i)) for i in indices], source.in_channels)

    x = load(cal_idx)
    xh = load(held_idx) if n_held else None
    yh = np.asarray(src.targets, np.int64)[held_idx] if (n_held and labelled) else None
    desc.update(samples=len(cal_idx), heldout_samples=int(n_held), seed=seed,
                stratified=labelled, stand_in=False, split_size=len(src))
    if not n_held:
        desc["note"] = ("accuracy unverified: the images carry no labels and are too few to "
                        "hold some out" if (not labelled and heldout) else
                        "accuracy unverified: no held-out images")
    targets = np.asarray(src.targets) if labelled else None
    desc.update(_fingerprints([src.digest(int(i)) for i in cal_idx],
                              [src.digest(int(i)) for i in held_idx],
                              None if targets is None else targets[cal_idx],
                              None if targets is None else targets[held_idx]))
    return CalibrationData(x, xh, yh, desc)


def calibration_images(source, calib_dir=None, dataset: str | None = None,
                       samples: int = 64) -> tuple[np.ndarray, dict]:
    """``(images, description)``: every sampled image goes to calibration (no held-out part)."""
    data = calibration_data(source, calib_dir, dataset, samples, heldout=0)
    return data.images, data.description
