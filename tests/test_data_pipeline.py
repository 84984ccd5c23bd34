"""Datasets, transforms and the per-epoch deterministic pipeline (real mindspore.dataset)."""
from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from shufflenet.config import make_config
from shufflenet.data.cifar import download_cifar10, read_cifar10
from shufflenet.data.folder import FolderSource
from shufflenet.data.pipeline import (eval_loader, eval_transform, epoch_order, fixed_loader,
                                      open_source, shard, train_loader)
from shufflenet.data.transforms import TrainTransform
from shufflenet.errors import DataError, DownloadError


def _folder(root, n_per_class=6, classes=("cat", "dog", "fox"), size=40):
    rng = np.random.default_rng(0)
    for c in classes:
        d = root / "train" / c
        d.mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)).save(
                d / f"{i}.png")
    return root


def test_train_transform_is_a_function_of_the_rng():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    t = TrainTransform(image_size=32, re_prob=0.5)
    a = t(img, np.random.default_rng([42, 3, 7]))
    b = t(img, np.random.default_rng([42, 3, 7]))
    c = t(img, np.random.default_rng([42, 4, 7]))
    assert a.shape == (3, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_random_resized_crop_stays_in_range():
    t = TrainTransform(image_size=32)
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, w, h = t.crop_box(70, 50, rng)
        assert 0 <= left and 0 <= top and left + w <= 70 and top + h <= 50
        assert 0.08 * 3500 * 0.9 <= w * h <= 3500


def test_random_erasing_fills_a_rectangle_with_the_value():
    img = Image.new("RGB", (32, 32), (200, 100, 50))
    t = TrainTransform(image_size=32, hflip=0, color_jitter=0, re_prob=1.0, re_value=0.0)
    out = t(img, np.random.default_rng(3))
    assert (out == 0).all(axis=0).sum() > 0


def test_epoch_order_and_shards_make_the_combined_batch():
    o1, o2 = epoch_order(100, 42, 1), epoch_order(100, 42, 1)
    assert np.array_equal(o1, o2) and not np.array_equal(o1, epoch_order(100, 42, 2))
    r0, r1 = shard(o1, 0, 2), shard(o1, 1, 2)
    bs = 4
    for s in range(len(r0) // bs):  # ranks' step-s batches == single-process step-s batch of 8
        assert set(r0[s * bs:(s + 1) * bs]) | set(r1[s * bs:(s + 1) * bs]) == set(
            o1[s * 2 * bs:(s + 1) * 2 * bs])


def test_resumed_loader_yields_the_remaining_batches_exactly():
    cfg = make_config("demo", {"num_samples": 40, "batch_size": 8, "num_parallel_workers": 2})
    src = open_source(cfg, "train")
    full = [(x.copy(), y.copy()) for x, y in train_loader(src, cfg, epoch=2)]
    tail = [(x.copy(), y.copy()) for x, y in train_loader(src, cfg, epoch=2, start_step=3)]
    assert len(full) == 5 and len(tail) == 2
    for (a, la), (b, lb) in zip(full[3:], tail):
        assert np.array_equal(a, b) and np.array_equal(la, lb)


def test_fixed_loader_pairs_each_unaugmented_image_with_its_own_target_row():
    """QAT's cached teacher logits: each image (the eval preprocessing, in the epoch's shuffled
    order and step count) comes with *its* row of the targets, and a resumed epoch yields
    the remaining batches exactly."""
    cfg = make_config("demo", {"num_samples": 40, "batch_size": 8, "num_parallel_workers": 2})
    src = open_source(cfg, "train")
    targets = np.stack([np.full(3, i, np.float32) for i in range(len(src))])
    targets[:, 1] = np.asarray(src.targets, np.float32)
    ref = eval_transform(cfg)
    full = [(x.copy(), t.copy()) for x, t in fixed_loader(src, cfg, targets, epoch=2)]
    assert len(full) == len(list(train_loader(src, cfg, epoch=2))) == 5
    seen = np.concatenate([t[:, 0] for _, t in full]).astype(int)
    assert np.array_equal(seen, epoch_order(len(src), cfg["seed"], 2))
    for x, t in full:
        assert x.dtype == np.float32 and t.dtype == np.float32 and t.shape == (8, 3)
        for img, row in zip(x, t):
            assert np.array_equal(img, ref(src.load(int(row[0]))))
    tail = list(fixed_loader(src, cfg, targets, epoch=2, start_step=3))
    assert len(tail) == 2 and all(np.array_equal(a[1], b[1]) for a, b in zip(full[3:], tail))
    # the same batches from the preprocessed images held in memory (nothing decoded again)
    images = np.stack([ref(src.load(i)) for i in range(len(src))])
    held = fixed_loader(src, cfg, targets, epoch=2, start_step=1, images=images)
    assert held.steps == 4
    for (a, ta), (b, tb) in zip(full[1:], held):
        assert np.array_equal(a, b) and np.array_equal(ta, tb)
    with pytest.raises(DataError, match="39 targets for 40 images"):
        fixed_loader(src, cfg, targets[:-1], epoch=0)


def test_eval_loader_matches_eval_transform():
    cfg = make_config("demo", {"num_samples": 10, "batch_size": 4, "crop_pct": 0.875})
    src = open_source(cfg, "val")
    batches = list(eval_loader(src, cfg))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    ref = eval_transform(cfg)(src.load(5))
    assert np.array_equal(batches[1][0][1], ref)


def test_folder_source_classes_and_corrupt_images(tmp_path):
    root = _folder(tmp_path)
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg at all")
    cfg = make_config("demo", {"dataset": "imagenet", "data_dir": str(root), "batch_size": 4,
                               "image_resize": 32})
    src = open_source(cfg, "train")
    assert src.classes == ["cat", "dog", "fox"] and len(src) == 19
    loader = train_loader(src, cfg, epoch=0)
    n = sum(len(y) for _, y in loader)
    assert n == 16 and loader.skipped.count == 1
    assert "broken.jpg" in loader.skipped.first[0]


def test_missing_and_empty_folders_are_data_errors(tmp_path):
    cfg = make_config("demo", {"dataset": "imagenet", "data_dir": str(tmp_path / "none")})
    with pytest.raises(DataError, match="not found"):
        open_source(cfg, "train")
    (tmp_path / "d" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        FolderSource(tmp_path / "d" / "train")
    (tmp_path / "d" / "train" / "a").mkdir()
    with pytest.raises(DataError, match="no images"):
        FolderSource(tmp_path / "d" / "train")


def _cifar_bin(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 255, (n, 3072), dtype=np.uint8)
    return np.concatenate([labels[:, None], pixels], axis=1).tobytes(), labels, pixels


def _cifar_tree(root):
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    for i in range(1, 6):
        (d / f"data_batch_{i}.bin").write_bytes(_cifar_bin(4, i)[0])
    raw, labels, pixels = _cifar_bin(3, 9)
    (d / "test_batch.bin").write_bytes(raw)
    return d, labels, pixels


def test_cifar10_binary_reader(tmp_path):
    _, labels, pixels = _cifar_tree(tmp_path)
    train = read_cifar10(tmp_path, "train")
    test = read_cifar10(tmp_path, "val")
    assert len(train) == 20 and len(test) == 3 and train.classes[0] == "airplane"
    assert np.array_equal(test.targets, labels)
    # record = R plane, G plane, B plane -> HWC
    assert test.images[1][0, 1, 2] == pixels[1][2 * 1024 + 1]


def test_cifar10_truncated_and_missing(tmp_path):
    d, _, _ = _cifar_tree(tmp_path)
    (d / "test_batch.bin").write_bytes(b"\x01" * 100)
    with pytest.raises(DataError, match="truncated"):
        read_cifar10(tmp_path, "test")
    with pytest.raises(DataError, match="--dataset_download"):
        read_cifar10(tmp_path / "empty", "train")


def test_cifar10_download_offline_and_checksum(tmp_path):
    with pytest.raises(DownloadError, match="offline"):
        download_cifar10(tmp_path / "a", url="http://127.0.0.1:9/cifar-10-binary.tar.gz",
                         timeout=2)
    # a local archive in the official layout, served over file://
    src = tmp_path / "src"
    _cifar_tree(src)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
    archive = tmp_path / "cifar-10-binary.tar.gz"
    archive.write_bytes(buf.getvalue())
    url = archive.as_uri()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_cifar10(tmp_path / "b", url=url, md5="0" * 32)
    assert not (tmp_path / "b" / "cifar-10-binary.tar.gz").exists()  # no half/bad file kept
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    folder = download_cifar10(tmp_path / "c", url=url, md5=md5)
    assert len(read_cifar10(folder.parent, "train")) == 20
