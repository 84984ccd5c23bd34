"""One evaluation preprocessing: validate, the parity reference, int8 calibration, bench
and the device agent feed identical tensors for the same image, so they see the same top-1.

Seen before: validate resized image files with OpenCV's area filter (MindSpore's C++ Resize),
everything else with Pillow bilinear (the artifact's contract): one checkpoint scored
81.67 % in validate and 78.33 % through its artifact's preprocessing. The photos here are
real (scikit-image's samples), cut at random sizes and aspect ratios and scaled both up and
down around the contract's resize, as PNG and JPEG.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import conftest_parity as H
import numpy as np
import pytest
from PIL import Image

SIZE = 64                      # the contract's input side (resize 73 at crop_pct 0.875)
CLASSES = ("0", "1", "2")      # the checkpoint's labels (H.make_checkpoint names them so)
PHOTOS = ("astronaut", "chelsea", "coffee")


def _cuts(rng, photo: Image.Image, n: int):
    """``n`` random crops of ``photo``, each scaled to a random size and aspect: from a
    24 px sliver (upscaled ~3x to reach 73 px) to 700 px (downscaled ~10x)."""
    w, h = photo.size
    for _ in range(n):
        cw, ch = int(rng.integers(16, w // 2)), int(rng.integers(16, h // 2))
        left, top = int(rng.integers(0, w - cw)), int(rng.integers(0, h - ch))
        out = (int(rng.integers(24, 700)), int(rng.integers(24, 700)))
        yield photo.crop((left, top, left + cw, top + ch)).resize(out, Image.BILINEAR)


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(19)
    sizes = []
    for split, n in (("train", 4), ("val", 6)):
        for label, name in zip(CLASSES, PHOTOS):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, img in enumerate(_cuts(rng, Image.fromarray(getattr(skd, name)()[..., :3]), n)):
                sizes.append(img.size)
                if i % 2:
                    img.save(folder / f"{i}.jpg", quality=85)
                else:
                    img.save(folder / f"{i}.png")
    short = [min(s) for s in sizes]
    assert min(short) < 73 < max(short)             # both upscaled and downscaled
    assert max(max(s) / min(s) for s in sizes) > 4   # slivers as well as squares
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return H.make_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.ckpt", num_classes=3, size=SIZE)


@pytest.fixture(scope="module")
def onnx_artifact(checkpoint, tmp_path_factory):
    from exporters import export_checkpoint

    from shufflenet.artifact import resolve_artifact

    (res,) = export_checkpoint(checkpoint, ["onnx"], tmp_path_factory.mktemp("out"),
                               progress=False)
    return resolve_artifact(res.path)   # resolved once, as every command does at its edge


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _validate_tensors(checkpoint, root) -> dict:
    """digest -> tensor, through validate's own inputs and loader."""
    from shufflenet.checkpoint import read_metadata
    from shufflenet.data.pipeline import eval_loader
    from shufflenet.validate import eval_inputs

    source, transform = eval_inputs(read_metadata(checkpoint), H.MODEL, "imagenet", str(root))
    loader = eval_loader(source, {"batch_size": 5, "num_parallel_workers": 2}, transform=transform)
    x = np.concatenate([b for b, _ in loader])
    return {source.digest(i): x[i] for i in range(len(source))}


def test_validate_parity_calibration_bench_and_device_feed_identical_tensors(
        photo_set, checkpoint, onnx_artifact):
    from exporters.calibration import calibration_data
    from exporters.metadata import read_artifact_metadata
    from exporters.source import load_source
    from shufflenet.data.preprocess import EvalTransform, read_image
    from toolchain.bench.session import input_batch
    from toolchain.parity.comparator import check_artifacts
    from toolchain.parity.inputs import resolve_inputs

    val = _validate_tensors(checkpoint, photo_set)
    assert len(val) == 18

    # the parity reference: its transform comes from check_artifacts, its images from resolve_inputs
    ref_meta = dict(H.ckpt_metadata(num_classes=3, size=SIZE))
    transform, _ = check_artifacts(ref_meta, [onnx_artifact], _sha(checkpoint))
    inputs = resolve_inputs(dataset=photo_set, split="val", model_labels=list(CLASSES),
                            num_classes=3)
    parity = {}
    for batch in inputs.batches(transform, 4):
        parity.update(zip(inputs.hashes[-len(batch.x):], batch.x))
    assert parity.keys() == val.keys()
    assert all(np.array_equal(parity[d], val[d]) for d in val)

    # int8 calibration of this checkpoint on the same folder (all images, none held out)
    calib = calibration_data(load_source(checkpoint), calib_dir=photo_set / "val", samples=18,
                             heldout=0)
    short = {d[:16]: d for d in val}
    order = [short[d] for d in calib.description["images_sha256"]]
    assert np.array_equal(calib.images, np.stack([val[d] for d in order]))

    # bench / device inputs: the artifact's contract run on the host (the agent gets tensors)
    meta = read_artifact_metadata(onnx_artifact)
    files = sorted((photo_set / "val").rglob("*.*"))
    images = [read_image(f) for f in files]
    host = EvalTransform.from_metadata(meta).batch([im for im, _ in images])
    assert np.array_equal(host, np.stack([val[d] for _, d in images]))
    bench = input_batch(meta, 3)
    assert bench.dtype == np.float32 and bench.shape == (3, 3, SIZE, SIZE)
    assert transform == EvalTransform.from_metadata(meta)    # one contract, read one way


def test_the_device_agent_ships_no_image_code():
    """Preprocessing runs once, on the host, from the contract: the zipapp a device runs holds
    the artifact contract and the runners, not the preprocessing (no Pillow on a device)."""
    from runtimes.bundle import agent_zipapp

    with zipfile.ZipFile(agent_zipapp()) as z:
        names = z.namelist()
        text = "".join(z.read(n).decode("utf-8", "replace") for n in names if n.endswith(".py"))
    assert "shufflenet/artifact.py" in names
    assert not any("preprocess" in n or n.startswith("shufflenet/data") for n in names)
    assert "import PIL" not in text and "from PIL" not in text


def test_validate_and_parity_give_the_same_top1_and_fingerprint(photo_set, checkpoint,
                                                                onnx_artifact):
    from runtimes.devices import SubprocessDevice
    from shufflenet.validate import validate
    from toolchain.parity import run_parity

    res = validate(ckpt_path=str(checkpoint), dataset="imagenet", data_dir=str(photo_set),
                   batch_size=8, device_target="CPU", mode=1, progress=False)
    assert res["preprocessing"] == {"image_size": SIZE, "crop_pct": 0.875,
                                    "mean": list(H.ckpt_metadata()["mean"]),
                                    "std": list(H.ckpt_metadata()["std"]),
                                    "interpolation": "bilinear"}
    # the reference here, the artifact on a device through the agent (it receives tensors)
    report = run_parity(checkpoint, [onnx_artifact], dataset=str(photo_set), split="val",
                        engines=["onnxruntime"], device=SubprocessDevice(), progress=False,
                        localize=False)
    (pair,) = report.pairs
    acc = pair.metrics["accuracy"]
    assert res["num_images"] == report.inputs["samples"] == 18
    assert acc["reference_accuracy"] == res["top1"]
    assert acc["candidate_accuracy"] == res["top1"] and pair.metrics["top1_agreement"] == 1.0
    assert 0 < res["top1"] < 1                      # the predictions are not all one class
    assert report.inputs["sha256"] == res["images_fingerprint"]
    assert report.inputs["preprocessing"] == res["preprocessing"]


def test_a_checkpoint_without_metadata_takes_the_artifacts_input_size(tmp_path):
    """`shufflenet export m.ckpt --model ... --image-size 64` then `shufflenet parity m.ckpt
    m.onnx --model ...` stopped with "input shape (8, 3, 64, 64) does not match the
    artifact's (-1, 3, 224, 224)": the reference assumed 224 for a MindCV-style checkpoint."""
    import mindspore as ms
    from click.testing import CliRunner

    from shufflenet.checkpoint import read_metadata
    from shufflenet.models import create_model
    from toolchain.cli import main

    ms.set_seed(0)
    net = create_model(H.MODEL, num_classes=3)
    H._sharpen(net, 0, SIZE)
    raw = tmp_path / "mindcv_style.ckpt"
    ms.save_checkpoint(net, str(raw))          # MindCV's own format: no metadata at all
    assert not read_metadata(raw).get("image_size")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(raw), "--model", H.MODEL, "-f", "onnx",
                                    "--image-size", str(SIZE), "-o", str(out)])
    assert res.exit_code == 0, res.output
    onnx_file = out / f"{H.MODEL}.onnx"
    res = CliRunner().invoke(main, ["parity", str(raw), str(onnx_file), "--model", H.MODEL,
                                    "--engine", "onnxruntime", "--samples", "8", "--no-localize"])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "does not match" not in res.output
    assert "prepared as the artifacts' metadata describes" in res.output


def test_a_contract_contradicting_the_checkpoints_metadata_still_fails(checkpoint, tmp_path):
    """The reference follows the artifact only where the checkpoint is silent: a 96 px export of
    a checkpoint that records 64 px fails the deployment contract, naming the field."""
    from exporters import export_checkpoint
    from toolchain.parity import run_parity

    (res,) = export_checkpoint(checkpoint, ["onnx"], tmp_path, image_size=96, progress=False)
    report = run_parity(checkpoint, [res.path], engines=["onnxruntime"], samples=4,
                        progress=False, localize=False)
    (pair,) = report.pairs
    assert pair.status == "FAIL" and not report.passed
    assert any(m.startswith("input_size: artifact [96, 96] vs checkpoint [64, 64]")
               for m in pair.contract)
