"""Real images for int8 calibration, preprocessed exactly as at evaluation."""
from __future__ import annotations

import numpy as np

from shufflenet.errors import ConfigError, DataError

DATASETS = ("demo", "demo:train", "demo:val", "photos")


def calibration_images(source, calib_dir=None, dataset: str | None = None,
                       samples: int = 64) -> tuple[np.ndarray, dict]:
    """``(images NCHW float32, description)`` for the checkpoint's preprocessing.

    ``calib_dir``: every image under the folder (sorted, first ``samples``);
    ``dataset``: ``demo[:train|val]`` (the built-in digits, evenly spaced
    samples) or ``photos`` (the real photos shipped with scikit-learn/-image).
    Default: ``photos``.
    """
    from shufflenet.data.preprocess import EvalTransform, list_images, load_image

    transform = EvalTransform(source.image_size, source.preprocess["crop_pct"],
                              tuple(source.preprocess["mean"]), tuple(source.preprocess["std"]),
                              source.preprocess["interpolation"])
    if calib_dir is not None:
        files = list_images(calib_dir)[:samples]
        arrays = [transform(load_image(f)) for f in files]
        described = {"source": "folder", "path": str(calib_dir), "samples": len(arrays)}
    else:
        dataset = (dataset or "photos").lower()
        if dataset not in DATASETS:
            raise ConfigError(f"unknown calibration dataset {dataset!r}; use one of "
                              f"{', '.join(DATASETS)} or --calib DIR")
        if dataset == "photos":
            from shufflenet.data.preprocess import sample_photos

            photos = sample_photos()[:samples]
            arrays = [transform(img) for _, img in photos]
        else:
            from shufflenet.data.demo import demo_arrays

            split = dataset.split(":")[1] if ":" in dataset else "train"
            images, _ = demo_arrays(split, size=max(source.image_size, 32))
            idx = np.linspace(0, len(images) - 1, num=min(samples, len(images))).astype(int)
            arrays = [transform(images[i]) for i in idx]
        described = {"source": "dataset", "dataset": dataset, "samples": len(arrays)}
    if not arrays:
        raise DataError("no calibration images")
    x = np.stack(arrays).astype(np.float32)
    if source.in_channels == 1:
        x = x.mean(axis=1, keepdims=True)
    return np.ascontiguousarray(x), described
