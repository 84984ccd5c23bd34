"""Calibration data selection and the accuracy-aware int8 search (real checkpoint, real ORT)."""
import json
from pathlib import Path

import conftest_parity as H
import numpy as np
import pytest
from click.testing import CliRunner

from exporters.calibration import (
    STAND_IN_NOTE,
    calibration_data,
    split_counts,
    stratified_order,
)
from toolchain.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return H.make_checkpoint(tmp_path_factory.mktemp("int8") / "tiny.ckpt")


@pytest.fixture(scope="module")
def source(ckpt):
    from exporters.source import load_source

    return load_source(ckpt)


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory):
    """90 demo digits as PNG files in one flat, unlabelled folder."""
    from PIL import Image

    from shufflenet.data.demo import demo_arrays

    d = tmp_path_factory.mktemp("digits")
    images, _ = demo_arrays("train", size=64)
    for i in range(90):
        Image.fromarray(images[i * 7]).save(d / f"{i:03d}.png")
    return d


def test_stratified_order_keeps_class_shares_in_every_prefix():
    targets = np.array([0] * 60 + [1] * 30 + [2] * 10)
    order = stratified_order(targets, seed=3)
    assert sorted(order.tolist()) == list(range(100))
    for k in (10, 20, 50):
        counts = np.bincount(targets[order[:k]], minlength=3)
        assert np.abs(counts - k * np.array([0.6, 0.3, 0.1])).max() <= 1, (k, counts)
    assert stratified_order(targets, seed=3).tolist() == order.tolist()     # seeded
    assert stratified_order(targets, seed=4).tolist() != order.tolist()


def test_split_counts():
    assert split_counts(1000, 256, 128, True) == (256, 128)
    assert split_counts(240, 256, 128, True) == (160, 80)      # a third held out, rest calibrates
    assert split_counts(11, 256, 128, False) == (11, 0)       # too few unlabelled to hold out


def test_calibration_follows_the_checkpoint_training_split_and_never_val(source):
    from shufflenet.data.demo import demo_arrays
    from toolchain.parity.inputs import resolve_inputs

    meta = dict(source.checkpoint_meta, recipe={"dataset": "demo", "train_split": "train"})
    src = type(source)(**{**source.__dict__, "checkpoint_meta": meta})
    data = calibration_data(src, samples=48, heldout=24)
    d = data.description
    assert d["kind"] == "train-split" and d["split"] == "train" and not data.stand_in
    assert data.images.shape == (48, 3, 64, 64) and data.heldout.shape == (24, 3, 64, 64)
    assert np.bincount(data.heldout_labels, minlength=10).min() >= 2       # stratified
    assert len(d["fingerprint"]) == 64 and d["heldout_fingerprint"] != d["fingerprint"]
    # the parity inputs of the val split share no image with calibration or held-out
    val = resolve_inputs(dataset="demo", split="val", image_size=64, num_classes=10)
    from shufflenet.data.preprocess import EvalTransform

    for _ in val.batches(EvalTransform(64), 128):
        pass
    assert not {h[:16] for h in val.hashes} & set(d["images_sha256"])
    # the same seed gives the same sample
    assert calibration_data(src, samples=48, heldout=24).description["fingerprint"] == d["fingerprint"]
    assert len(demo_arrays("train", 64)[0]) == d["split_size"]


def test_unreachable_training_data_falls_back_to_stand_in_photos_labelled(source, tmp_path):
    meta = dict(source.checkpoint_meta, recipe={"dataset": "imagenet",
                                                "data_dir": str(tmp_path / "gone")})
    src = type(source)(**{**source.__dict__, "checkpoint_meta": meta})
    data = calibration_data(src, samples=8)
    assert data.stand_in and data.description["note"] == STAND_IN_NOTE
    assert "not reachable" in data.description["reason"] and data.heldout is None


@pytest.mark.slow
def test_budget_missed_writes_the_best_artifact_and_exits_1(ckpt, digit_folder, tmp_path):
    # unlabelled calibration images: the budget is on top-1 disagreement with fp32 (30
    # held-out digits); 0 pp with no time to search cannot be met by this int8 net
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["export", str(ckpt), "-f", "onnx-int8", "-o", str(out),
                                       "--calib", str(digit_folder), "--max-accuracy-drop", "0",
                                       "--search-seconds", "0.001"])
    assert result.exit_code == 1, result.output
    assert "missed its accuracy budget" in result.output and "Traceback" not in result.output
    assert result.output.count("Error:") == 1
    from exporters.metadata import read_artifact_metadata

    path = out / "shufflenet_v2_x0_5.int8.onnx"
    found = read_artifact_metadata(path)["export_options"]["int8"]
    assert found["budget_met"] is False and found["metric"] == "top-1 disagreement"
    assert found["heldout_samples"] == 30 and found["stopped"] == "search time spent"


@pytest.mark.slow
def test_search_keeps_the_most_sensitive_layers_in_fp32(ckpt, digit_folder, tmp_path):
    import onnx

    from exporters import export_checkpoint
    from exporters.metadata import read_artifact_metadata

    (r,) = export_checkpoint(ckpt, "onnx-int8", tmp_path, calib_dir=digit_folder,
                             max_accuracy_drop_pp=4.0, search_seconds=240, progress=False)
    meta = read_artifact_metadata(r.path)["export_options"]
    found = meta["int8"]
    trials = found["trials"]
    assert trials[0]["method"] == "minmax" and trials[0]["fp32_layers"] == []
    assert found["budget_met"] is True and r.problem is None, found
    assert found["drop_pp"] <= 4.0 < trials[0]["drop_pp"]      # int8-all missed, the search fixed it
    assert [t["method"] for t in trials[1:4]] == ["percentile", "entropy", "minmax"]
    layers = found["fp32_layers"]
    assert layers and meta["fp32_layers"] == layers
    # those convs really run in fp32: their weights are plain initializers, not dequantised
    g = onnx.load(r.path).graph
    producers = {o: n.op_type for n in g.node for o in n.output}
    nodes = {n.name: n for n in g.node}
    for name in layers:
        assert producers.get(nodes[name].input[1]) != "DequantizeLinear", name
    quantised = [n for n in g.node if n.op_type == "Conv" and n.name not in layers]
    assert all(producers.get(n.input[1]) == "DequantizeLinear" for n in quantised)
    lat = found["latency_ms"]
    assert set(lat) == {"fp32", "int8_all", "mixed"} and all(v > 0 for v in lat.values())
    assert json.loads(json.dumps(meta["calibration"]))["kind"] == "folder"
