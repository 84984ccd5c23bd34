"""The native (MindSpore C++ ops) training data engine: augmentation statistics, corrupt
files, exact resume, 2-rank sharding; evaluation is the artifact's preprocessing, bit for bit."""
from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shufflenet.config import make_config
from shufflenet.data import native
from shufflenet.data.folder import ArraySource
from shufflenet.data.photo_folder import write_photo_folder
from shufflenet.data.pipeline import data_engine, eval_loader, open_source, train_loader
from shufflenet.data.preprocess import EvalTransform
from shufflenet.data.transforms import TrainTransform
from shufflenet.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
W, H = 256, 192  # gradient test images: R = x, G = y (exact in PNG)


def _cfg(root, **kw):
    opts = {"dataset": "imagenet", "data_dir": str(root), "batch_size": 16, "image_resize": 32,
            "num_parallel_workers": 2, "hflip": 0.0, "color_jitter": 0.0, "re_prob": 0.0,
            "scale": [0.08, 1.0], "ratio": [0.75, 1.333]}
    opts.update(kw)
    return make_config("shufflenet_v2_1.0_ascend", opts)


@pytest.fixture(scope="module")
def gradient_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("grad")
    x, y = np.meshgrid(np.arange(W), np.arange(H))
    img = np.stack([x, y, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    for c in ("a", "b"):
        d = root / "train" / c
        d.mkdir(parents=True)
        for i in range(64):
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory):
    return write_photo_folder(tmp_path_factory.mktemp("photos"), classes=3, per_class=16,
                              size=(96, 72))


def _ks(a, b) -> float:
    grid = np.sort(np.concatenate([a, b]))
    cdf = lambda x: np.searchsorted(np.sort(x), grid, side="right") / len(x)  # noqa: E731
    return float(np.abs(cdf(a) - cdf(b)).max())


def _pixels(images, cfg):
    mean = np.asarray(cfg["mean"], np.float32)[None, :, None, None]
    std = np.asarray(cfg["std"], np.float32)[None, :, None, None]
    return images * std + mean


def _gradient_batches(root, **kw):
    cfg = _cfg(root, **kw)
    src = open_source(cfg, "train")
    assert data_engine(src, cfg) == "native"
    out = [x for e in range(2) for x, _ in train_loader(src, cfg, epoch=e)]
    return np.concatenate(out), cfg


def test_random_resized_crop_scale_and_ratio(gradient_root):
    images, cfg = _gradient_batches(gradient_root)
    px = _pixels(images, cfg)  # [N, 3, 32, 32]; R encodes source x, G source y
    n = len(px)
    # the crop spans [R at column 0, R at the last column] (+ one source pixel per edge)
    w = px[:, 0, 16, -1] - px[:, 0, 16, 0]
    h = px[:, 1, -1, 16] - px[:, 1, 0, 16]
    w, h = w * 32 / 31, h * 32 / 31  # centres of the edge pixels -> full extent
    scale, ratio = w * h / (W * H), w / h
    assert n == 256
    assert scale.min() > 0.07 and scale.max() <= 1.02
    assert ratio.min() > 0.75 * 0.93 and ratio.max() < 1.333 * 1.07
    # the distributions are MindCV/torchvision's sampling (retries included), by a
    # two-sample Kolmogorov-Smirnov test against that algorithm (alpha = 0.001)
    t, rng = TrainTransform(image_size=32), np.random.default_rng(0)
    boxes = np.array([t.crop_box(W, H, rng)[2:] for _ in range(20000)], dtype=np.float64)
    for got, want in ((scale, boxes[:, 0] * boxes[:, 1] / (W * H)),
                      (ratio, boxes[:, 0] / boxes[:, 1])):
        assert _ks(got, want) < 1.95 * np.sqrt((n + len(want)) / (n * len(want)))
    # crop positions vary too
    assert np.std(px[:, 0, 16, 0]) > 10 and np.std(px[:, 1, 0, 16]) > 10


def test_flip_rate_and_erasing(gradient_root):
    images, cfg = _gradient_batches(gradient_root, hflip=0.5, re_prob=0.5, scale=[0.5, 1.0])
    n = len(images)
    px = _pixels(images, cfg)
    flipped = px[:, 0, 16, 0] > px[:, 0, 16, -1]
    sigma = np.sqrt(0.25 / n)
    assert abs(flipped.mean() - 0.5) < 3.5 * sigma
    erased = (images == 0).all(axis=1)  # value 0 in every channel: the erased rectangle
    has = erased.any(axis=(1, 2))
    assert abs(has.mean() - 0.5) < 3.5 * sigma
    frac = erased[has].mean(axis=(1, 2))
    assert frac.min() >= 0.015 and frac.max() <= 0.34
    # a rectangle: its rows and columns span exactly its area
    for m in erased[has][:20]:
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        box = m[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        assert m.sum() == len(rows) * len(cols) == box.sum()


def test_resume_mid_epoch_is_exact_and_epochs_are_deterministic(photo_root, monkeypatch):
    monkeypatch.setattr(native, "SEGMENT_STEPS", 4)
    cfg = _cfg(photo_root, batch_size=4, hflip=0.5, color_jitter=0.4, re_prob=0.5)
    src = open_source(cfg, "train")

    def run(**kw):
        loader = train_loader(src, cfg, **kw)
        got = [(x.copy(), y.copy()) for x, y in loader]
        assert len(got) == loader.steps
        return got

    full = run(epoch=3)
    assert len(full) == 12
    again = run(epoch=3)
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(full, again))
    other = run(epoch=4)
    assert not np.array_equal(full[0][0], other[0][0])
    for k in (6, 8, 11):  # mid-segment, on a segment boundary, last step
        tail = run(epoch=3, start_step=k)
        assert len(tail) == 12 - k
        for (a, la), (b, lb) in zip(full[k:], tail):
            assert np.array_equal(a, b) and np.array_equal(la, lb)


def test_uint8_nhwc_batches_normalised_in_graph_match_the_float_batches(photo_root):
    cfg = _cfg(photo_root, batch_size=8, hflip=0.5, color_jitter=0.4, re_prob=0.5)
    src = open_source(cfg, "train")
    floats = list(train_loader(src, cfg, epoch=1))
    loader = train_loader(src, cfg, epoch=1, uint8=True)
    raw = [(x.copy(), y) for x, y in loader]
    assert raw[0][0].dtype == np.uint8 and raw[0][0].shape == (8, 32, 32, 3)
    worst = 0.0
    for (x, y), (u, v) in zip(floats, raw):
        assert np.array_equal(y, v)
        worst = max(worst, float(np.abs(loader.to_network(u).asnumpy() - x).max()))
    # same crops, flips, jitter and erased rectangles; only the erasing fill is rounded
    # to a pixel value (<= 0.5 / std)
    assert worst <= 0.5 / min(cfg["std"]) + 1e-5


def test_corrupt_and_truncated_images_are_skipped_and_counted(tmp_path, photo_root, monkeypatch):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(photo_root / "train", root / "train")
    good = sorted((root / "train" / "c1").glob("*.jpg"))
    data = good[0].read_bytes()
    (root / "train" / "c1" / "00003.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (root / "train" / "c2" / "zz_text.jpg").write_bytes(b"not an image")
    (root / "train" / "c0" / "zz_empty.png").write_bytes(b"")
    (root / "train" / "c2" / "00005.jpg").write_bytes(_decoder_only_corrupt(good[1]))
    monkeypatch.chdir(tmp_path)  # MindSpore dumps undecodable input to ./abnormal_image.jpg
    cfg = _cfg(root, batch_size=8)
    src = open_source(cfg, "train")
    assert len(src) == 50
    loader = train_loader(src, cfg, epoch=0)
    shapes = [(x.shape, len(y)) for x, y in loader]
    assert shapes == [((8, 3, 32, 32), 8)] * 6
    assert loader.skipped.count == 4
    assert any("truncated JPEG" in m and "00003.jpg" in m for m in loader.skipped.first)
    ev = eval_loader(src, cfg)
    assert sum(len(y) for _, y in ev) == 50 and ev.skipped.count == 4
    # the decoder's dump of the refused file is not left in the user's working directory
    assert not list(tmp_path.glob("abnormal_image.*"))


def _decoder_only_corrupt(jpeg: Path) -> bytes:
    """Well-formed markers, bogus sampling factors: only the C++ decoder itself finds out."""
    bogus = bytearray(jpeg.read_bytes())
    bogus[bogus.index(b"\xff\xc0") + 11] = 0
    return bytes(bogus)


def test_decoder_dump_is_removed_but_a_users_own_file_of_that_name_is_kept(tmp_path, photo_root,
                                                                            monkeypatch):
    import shutil

    root = tmp_path / "d"
    shutil.copytree(photo_root / "train", root / "train")
    good = sorted((root / "train" / "c1").glob("*.jpg"))
    (root / "train" / "c2" / "00005.jpg").write_bytes(_decoder_only_corrupt(good[1]))
    cfg = _cfg(root, batch_size=8)
    src = open_source(cfg, "train")
    for cwd, users in ((tmp_path / "clean", None), (tmp_path / "users", b"mine")):
        cwd.mkdir()
        if users:
            (cwd / "abnormal_image.jpg").write_bytes(users)
        monkeypatch.chdir(cwd)
        loader = train_loader(src, cfg, epoch=0)
        assert sum(len(y) for _, y in loader) == 48 and loader.skipped.count == 1
        assert [p.name for p in cwd.iterdir()] == (["abnormal_image.jpg"] if users else [])


def test_eval_of_a_jpeg_folder_is_the_artifact_preprocessing_bit_for_bit(photo_root):
    """Eval batches of image files are EvalTransform's tensors exactly (they were OpenCV's
    area resize, which moved top-1 by 3.3 pp against the artifact's Pillow bilinear)."""
    cfg = _cfg(photo_root, image_resize=64, crop_pct=0.875, batch_size=10)
    src = open_source(cfg, "train")
    ref = EvalTransform(64, 0.875, tuple(cfg["mean"]), tuple(cfg["std"]))
    batches = list(eval_loader(src, cfg))
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    assert np.array_equal(labels, src.targets) and [len(y) for _, y in batches][-1] == 8
    expected = np.stack([ref(src.load(i)) for i in range(len(src))])
    assert images.dtype == np.float32 and np.array_equal(images, expected)
    assert not hasattr(native, "eval_ops")      # no second eval resize to drift from it


def test_cifar_arrays_take_the_native_path():
    rng = np.random.default_rng(0)
    src = ArraySource(rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8),
                      np.arange(40) % 10, [str(i) for i in range(10)])
    cfg = make_config("shufflenet_v2_0.5_ascend", {"dataset": "cifar10", "image_resize": 32,
                                                   "batch_size": 8, "num_parallel_workers": 2})
    assert data_engine(src, cfg) == "native"
    a = [x for x, _ in train_loader(src, cfg, epoch=0)]
    b = [x for x, _ in train_loader(src, cfg, epoch=0)]
    assert len(a) == 5 and a[0].shape == (8, 3, 32, 32) and a[0].dtype == np.float32
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_corrupt_dataset_is_one_clear_error(tmp_path):
    d = tmp_path / "train" / "a"
    d.mkdir(parents=True)
    for i in range(60):
        (d / f"{i}.jpg").write_bytes(b"\xff\xd8\xff broken")
    cfg = _cfg(tmp_path, batch_size=4)
    with pytest.raises(DataError, match="consecutive unreadable"):
        list(train_loader(open_source(cfg, "train"), cfg, epoch=0))


HARNESS = """
import json, sys
import numpy as np
import mindspore as ms
from mindspore.communication import get_group_size, get_rank, init
from shufflenet.config import make_config
from shufflenet.data.pipeline import open_source, train_loader
opts, out = json.loads(sys.argv[1]), sys.argv[2]
ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
init()
cfg = make_config("shufflenet_v2_1.0_ascend", opts)
loader = train_loader(open_source(cfg, "train"), cfg, 1, 0, get_rank(), get_group_size())
batches = [(x, y) for x, y in loader]
np.savez(f"{out}/rank{get_rank()}.npz", x=np.stack([b[0] for b in batches]),
         y=np.stack([b[1] for b in batches]))
"""


@pytest.mark.slow
def test_two_msrun_ranks_shard_the_single_process_batch(tmp_path, photo_root):
    """Ranks' step-s batches, stacked, are the single process's step-s batch of twice the size.

    Augmentation is switched to its deterministic corner (full-image crop of a
    4:3 image, no flip/jitter/erasing): the random streams themselves depend
    on the rank, by design."""
    opts = {"dataset": "imagenet", "image_resize": 32,
            "num_parallel_workers": 1, "hflip": 0.0, "color_jitter": 0.0, "re_prob": 0.0,
            "scale": [1.0, 1.0], "ratio": [96 / 72, 96 / 72], "seed": 5}
    # portrait photos (30 %) are not 4:3: keep landscape only via a filtered copy
    import shutil

    root = tmp_path / "land"
    for p in sorted((photo_root / "train").glob("*/*.jpg")):
        if Image.open(p).size == (96, 72):
            (root / "train" / p.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(p, root / "train" / p.parent.name / p.name)
    opts["data_dir"] = str(root)
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run(
        ["msrun", "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
         f"--master_port={port}", f"--log_dir={tmp_path / 'logs'}", "--join=True",
         str(script), json.dumps(dict(opts, batch_size=4)), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    logs = "".join(p.read_text()[-1500:] for p in (tmp_path / "logs").glob("*.log"))
    assert proc.returncode == 0, logs
    r0, r1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    cfg = make_config("shufflenet_v2_1.0_ascend", dict(opts, batch_size=8))
    single = list(train_loader(open_source(cfg, "train"), cfg, 1))
    assert len(single) == len(r0["x"]) == len(r1["x"]) >= 3
    for s, (x, y) in enumerate(single):
        # rank r takes every 2nd sample of the epoch order: positions r, r+2, ... of batch s
        assert np.array_equal(r0["x"][s], x[0::2]) and np.array_equal(r1["x"][s], x[1::2])
        assert np.array_equal(r0["y"][s], y[0::2]) and np.array_equal(r1["y"][s], y[1::2])
