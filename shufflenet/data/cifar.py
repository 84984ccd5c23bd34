"""CIFAR-10, the standard binary version (``cifar-10-batches-bin``).

Layout: ``data_batch_{1..5}.bin`` (train, 50,000) and ``test_batch.bin``
(10,000); each record is 1 label byte + 3,072 bytes of R, G, B planes (32x32).
``download_cifar10`` fetches the official archive and checks its MD5.
"""
from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from ..errors import DataError, DownloadError
from ..fileio import atomic_write
from .folder import ArraySource

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
_FOLDER = "cifar-10-batches-bin"
_RECORD = 1 + 3 * 32 * 32
_SPLITS = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 -- the published checksum is MD5
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cifar10_folder(data_dir: str | os.PathLike) -> Path:
    """The folder holding the ``.bin`` files: ``data_dir`` itself or its ``cifar-10-batches-bin``."""
    data_dir = Path(data_dir)
    return data_dir if (data_dir / "test_batch.bin").exists() else data_dir / _FOLDER


def download_cifar10(data_dir: str | os.PathLike, url: str = CIFAR10_URL,
                     md5: str = CIFAR10_MD5, timeout: float = 30.0) -> Path:
    """Download and unpack CIFAR-10 into ``data_dir`` (idempotent); returns the batches folder."""
    data_dir = Path(data_dir)
    folder = cifar10_folder(data_dir)
    if all((folder / f).exists() for names in _SPLITS.values() for f in names):
        return folder
    archive = data_dir / url.rsplit("/", 1)[-1]
    if not archive.exists() or _md5(archive) != md5:
        hint = f"download {CIFAR10_URL} yourself and unpack it into {data_dir}"
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (fixed URL)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(f"cannot download CIFAR-10 from {url} "
                                f"({getattr(exc, 'reason', exc)}); offline? {hint}") from None

        def write(tmp):
            from tqdm import tqdm

            total = int(resp.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as f, tqdm(total=total, unit="B", unit_scale=True,
                                            desc="cifar-10", leave=False) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    f.write(block)
                    bar.update(len(block))
            got = _md5(Path(tmp))
            if got != md5:
                raise DownloadError(f"CIFAR-10 archive checksum mismatch: md5 {got}, "
                                    f"expected {md5}; {hint}")

        try:
            atomic_write(archive, write)
        except OSError as exc:
            raise DownloadError(f"CIFAR-10 download failed ({exc}); {hint}") from None
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(data_dir, filter="data")
    return cifar10_folder(data_dir)


def read_cifar10(data_dir: str | os.PathLike, split: str = "train") -> ArraySource:
    """Read one split (``train`` or ``test``; ``val`` means ``test``) as an in-memory source."""
    split = "test" if split in ("val", "test") else split
    if split not in _SPLITS:
        raise DataError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}")
    folder = cifar10_folder(data_dir)
    missing = [f for f in _SPLITS[split] if not (folder / f).exists()]
    if missing:
        raise DataError(f"CIFAR-10 {split} files not found in {folder} ({', '.join(missing)}); "
                        f"pass --dataset_download or put the binary version there")
    chunks = []
    for name in _SPLITS[split]:
        raw = np.fromfile(folder / name, dtype=np.uint8)
        if raw.size == 0 or raw.size % _RECORD:
            raise DataError(f"{folder / name} is truncated or not CIFAR-10 binary "
                            f"({raw.size} bytes is not a multiple of {_RECORD})")
        chunks.append(raw.reshape(-1, _RECORD))
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int32)
    if labels.max() >= len(CIFAR10_CLASSES):
        raise DataError(f"{folder} has label {labels.max()}: not CIFAR-10 binary data")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return ArraySource(np.ascontiguousarray(images), labels, list(CIFAR10_CLASSES))
