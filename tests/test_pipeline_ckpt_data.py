"""`pipeline --ckpt_path CKPT` without --dataset judges the checkpoint on the data it names."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import main

CLASSES = ("ant", "bee", "cat")
PER_SPLIT = {"train": 4, "val": 5}
SIZE = 32


def _folder(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in PER_SPLIT.items():
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) // (k + 1)
                Image.fromarray(pixels).save(root / split / name / f"{i}.jpg")
    return root


def _checkpoint(path, recipe):
    import mindspore as ms

    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    ms.set_seed(0)
    net = create_model("shufflenet_v2_x0_5", num_classes=len(CLASSES))
    meta = {"model": "shufflenet_v2_x0_5", "num_classes": len(CLASSES), "in_channels": 3,
            "image_size": SIZE, "labels": list(CLASSES), "mean": [123.675, 116.28, 103.53],
            "std": [58.395, 57.12, 57.375], "crop_pct": 0.875, "interpolation": "bilinear",
            "epoch": 1, "global_step": 1}
    if recipe:
        meta["recipe"] = recipe
    return save_checkpoint(net, path, metadata=meta)


def _pipeline(ckpt, run_dir):
    return CliRunner().invoke(main, ["pipeline", "--ckpt_path", str(ckpt), "--formats", "onnx",
                                     "--target", "x86-edge-ort-1t", "--bench-seconds", "0.2",
                                     "-o", str(run_dir)])


def test_validate_and_parity_use_the_data_the_checkpoint_names(tmp_path):
    data = _folder(tmp_path / "photos")
    ckpt = _checkpoint(tmp_path / "user.ckpt", {"dataset": "imagenet", "data_dir": str(data),
                                                "train_split": "train", "val_split": "val"})
    res = _pipeline(ckpt, tmp_path / "run")
    assert "Traceback" not in res.output
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    val = rec["stages"]["validate"]
    # the user's 15 val photos, not the recipe's demo digits (359 images, 10 classes)
    assert val["metrics"]["data"] == {"dataset": "imagenet", "data_dir": str(data),
                                      "val_split": "val", "named_by": "checkpoint"}
    assert val["inputs"]["dataset"] == "imagenet" and val["inputs"]["data_dir"] == str(data)
    parity = rec["stages"]["parity"]["metrics"]["fingerprints"]
    assert parity["parity_samples"] == 3 * PER_SPLIT["val"] and str(data) in parity["parity_source"]
    assert f"{data}, split val (named by the checkpoint)" in (tmp_path / "run" / "report.md").read_text()

    # a val image added: validate and parity judge again instead of serving the cached verdict
    shutil.copy(data / "val" / "ant" / "0.jpg", data / "val" / "bee" / "extra.jpg")
    res = _pipeline(ckpt, tmp_path / "run")
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    # an untrained checkpoint: the chance gate may fail it (exit 1), and nothing else may
    assert all(g.startswith("model beats chance") for g in rec["failed_gates"]), res.output
    assert res.exit_code == (1 if rec["failed_gates"] else 0), res.output
    assert rec["stages"]["validate"]["status"] == rec["stages"]["parity"]["status"] == "done"
    # the artifacts bundle golden vectors drawn from the val split: they are re-made, and say why
    assert rec["stages"]["export"]["status"] == "done"
    assert "vectors_val_fingerprint" in rec["stages"]["export"]["cache_miss"]
    assert rec["stages"]["parity"]["metrics"]["fingerprints"]["parity_samples"] == 3 * PER_SPLIT["val"] + 1

    # the data moved away: one line before any stage, not a top-1 on other data
    shutil.move(str(data), str(tmp_path / "elsewhere"))
    res = _pipeline(ckpt, tmp_path / "run2")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "not reachable" in res.output and str(data) in res.output
    assert not (tmp_path / "run2" / "run.json").exists()


def test_checkpoint_naming_no_data_needs_dataset(tmp_path):
    ckpt = _checkpoint(tmp_path / "bare.ckpt", None)
    res = _pipeline(ckpt, tmp_path / "run")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "names no dataset" in res.output and "--dataset" in res.output


@pytest.mark.slow
def test_parity_on_the_calibration_images_fails_the_disjoint_gate(tmp_path):
    data = _folder(tmp_path / "photos")
    ckpt = _checkpoint(tmp_path / "user.ckpt", {"dataset": "imagenet", "data_dir": str(data),
                                                "train_split": "train", "val_split": "val"})
    # judging on the split int8 was calibrated on proves nothing: the gate must fail
    res = CliRunner().invoke(main, ["pipeline", "--ckpt_path", str(ckpt), "--dataset", "imagenet",
                                    "--data_dir", str(data), "--set", "val_split=train",
                                    "--formats", "onnx,onnx-int8", "--search-seconds", "5",
                                    "--qat", "off",     # an untrained model: no QAT here
                                    "--target", "x86-edge-ort-1t", "--bench-seconds", "0.2",
                                    "-o", str(tmp_path / "run")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    rec = json.loads((tmp_path / "run" / "run.json").read_text())
    fps = rec["stages"]["parity"]["metrics"]["fingerprints"]
    assert fps["shared_images"] == 3 * PER_SPLIT["train"]
    assert "calibration and parity images are disjoint" in rec["failed_gates"]
    assert rec["verdict"] == "FAIL"
