"""Proof on a user's own data: a real-photo dataset that is not the demo set.

A ShuffleNetV2 x0_5 is really trained (MindSpore, 12 epochs, 64 px) on three
texture classes cut from real photographs (``conftest_realdata``). Then:

* the old int8 -- calibrated on the stand-in photos, MinMax, no fallback --
  loses >= 3 pp on the val split, and parity catches it (FAIL or
  INCONCLUSIVE, never PASS);
* the new default ``onnx-int8`` -- calibrated on the checkpoint's own train
  split, accuracy-aware -- is judged on the same val split, and never PASSes
  when it loses more than 1 pp there (it is not guaranteed to stay within
  1 pp: see the test's comment);
* calibration images and parity images never overlap.
"""
import math

import conftest_realdata as R
import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("realdata")
    data = R.write_dataset(root / "data")
    ckpt = R.train_checkpoint(data, root / "train")
    return data, ckpt, root


@pytest.fixture(scope="module")
def exports(trained):
    from exporters import export_checkpoint

    data, ckpt, root = trained
    (naive,) = export_checkpoint(ckpt, "onnx-int8", root / "naive", dataset="photos",
                                 progress=False)
    new = {r.format: r for r in export_checkpoint(ckpt, "onnx,onnx-int8", root / "new",
                                                  progress=False)}
    return naive, new


def test_naive_int8_is_caught_and_the_default_int8_holds_accuracy_on_val(trained, exports):
    from exporters.metadata import read_artifact_metadata
    from toolchain.parity import run_parity

    data, ckpt, _ = trained
    naive, new = exports
    assert naive.notes == ["calibrated on stand-in photos: accuracy unverified"]
    assert read_artifact_metadata(naive.path)["accuracy_note"] == naive.notes[0]
    calib = read_artifact_metadata(new["onnx-int8"].path)["export_options"]["calibration"]
    assert calib["kind"] == "train-split" and calib["source"] == f"{data} (split train)"
    assert calib["stratified"] and calib["heldout_samples"] == 80 and calib["samples"] == 160
    report = run_parity(ckpt, [naive.path, new["onnx"].path, new["onnx-int8"].path],
                        engines=["onnxruntime"], dataset=str(data), split="val", progress=False,
                        localize=False)
    assert report.inputs["labelled"] and report.inputs["samples"] == 120
    naive_pair, fp32_pair, int8_pair = report.pairs
    lost = naive_pair.metrics["accuracy"]["delta"]
    # the old int8 is broken (measured -3.3 to -7.5 pp over training runs; >= 3 images here)
    assert lost <= -0.025, naive_pair.metrics["accuracy"]
    assert naive_pair.status in ("FAIL", "INCONCLUSIVE")                # ... and it is caught
    assert fp32_pair.status == "PASS"
    assert report.notes == [f"{naive.path.split('/')[-1]}: {naive.notes[0]}"]   # every report says so
    # The search met its budget on held-out *training* images; val is the independent check.
    # Measured on this set (see README): int8 activations alone cost ~1.5 % logit error, and
    # with 120 borderline val images (median top-1 margin ~0.95) that flips 0-6 images from one
    # training run to the next, so "within 1 pp on val" is not guaranteed. What must hold is
    # the gate: an int8 that loses more than 1 pp on val is never PASS.
    int8_delta = int8_pair.metrics["accuracy"]["delta"]
    print(f"\nnaive int8 {100 * lost:+.1f} pp ({naive_pair.status}), "
          f"calibrated int8 {100 * int8_delta:+.1f} pp ({int8_pair.status}) on val")
    if int8_delta < -0.01:
        assert int8_pair.status in ("FAIL", "INCONCLUSIVE"), int8_pair.metrics["accuracy"]
    else:
        assert int8_pair.status in ("PASS", "INCONCLUSIVE"), int8_pair.metrics["accuracy"]
    # the parity images (val) and the calibration + held-out images (train) are disjoint
    parity = {i["sha256"][:16] for i in report.inputs["images"]}
    assert not parity & set(calib["images_sha256"])


def test_export_cli_reports_the_search_and_a_missed_budget_exits_1(trained, tmp_path):
    from exporters.metadata import read_artifact_metadata

    data, ckpt, _ = trained
    # no time to search and no drop allowed: the search stops after int8-all
    res = CliRunner().invoke(main, ["export", str(ckpt), "-f", "onnx-int8", "-o", str(tmp_path),
                                    "--calib", str(data / "train"), "--max-accuracy-drop", "0",
                                    "--search-seconds", "0.001"])
    found = read_artifact_metadata(tmp_path / "shufflenet_v2_x0_5.int8.onnx")["export_options"]["int8"]
    if found["drop_pp"] > 0:
        assert res.exit_code == 1 and "missed its accuracy budget" in res.output, res.output
        assert "the best artifact found was written" in res.output
        assert found["budget_met"] is False and found["stopped"] == "search time spent"
    else:                                   # int8-all happened to lose nothing: nothing to miss
        assert res.exit_code == 0 and found["budget_met"] is True
    assert "Traceback" not in res.output
    assert "int8: minmax" in res.stdout and "held-out" in res.stdout


def test_search_keeps_sensitive_layers_in_fp32_until_the_budget_holds(trained, tmp_path):
    import onnx

    from exporters.calibration import calibration_data
    from exporters.export import ExportContext
    from exporters.int8_search import search_int8
    from exporters.source import load_source

    data, ckpt, _ = trained
    src = load_source(ckpt)
    cal = calibration_data(src, dataset=str(data), samples=160, heldout=80)
    # x0_5 is tiny: ask for agreement-level fidelity on the held-out part so layers must move
    ctx = ExportContext(src, tmp_path, "dynamic", None, None, 160)
    fp32 = ctx.optimized_onnx("gather")
    relaxed = search_int8(fp32, cal.images, cal.heldout, None, tmp_path, max_drop=1.0,
                          progress=False)
    assert relaxed.met and relaxed.fp32_layers == [] and len(relaxed.trials) == 1
    # a budget in trials, not seconds: on a loaded machine 30 s ended the search before any
    # layer was tried. 5 = int8-all, percentile, then three layers kept in fp32
    strict = search_int8(fp32, cal.images, cal.heldout, None, tmp_path, max_drop=0.0,
                         search_seconds=math.inf, max_trials=5, progress=False)
    assert strict.metric == "expected top-1 flips"
    first = strict.trials[0]
    assert first.expected_flips > 0       # a continuous estimate: never exactly 0 for int8
    # no Entropy (a no-op through quantize_static) and no per-tensor fallback (never better)
    assert [t.method for t in strict.trials[1:2]] == ["percentile"]
    assert all(t.per_channel for t in strict.trials)
    layer_trials = strict.trials[2:]
    assert layer_trials, "over budget after every method: layers must be tried in fp32"
    assert [len(t.fp32_layers) for t in layer_trials] == list(range(1, len(layer_trials) + 1))
    assert strict.drop == min(t.expected_flips for t in strict.trials)
    assert strict.met is False and strict.drop > 0
    # where int8-all times faster than fp32 here, a slower mixed model ends the search early
    # (a timing: either way is right); otherwise the trial limit does
    if not strict.stopped.endswith("fp32 layers made it no faster than fp32"):
        assert strict.stopped == "trial limit reached" and len(strict.trials) == 5
    g = strict.model.graph
    producers = {o: n.op_type for n in g.node for o in n.output}
    nodes = {n.name: n for n in g.node}
    for name in strict.fp32_layers:          # kept layers take plain fp32 weights (if any won)
        assert producers.get(nodes[name].input[1]) != "DequantizeLinear", name
    assert isinstance(strict.model, onnx.ModelProto)
    assert np.isfinite([t.drop for t in strict.trials]).all()
    lo, hi = first.flips_ci
    assert lo <= first.expected_flips <= hi


def test_pipeline_judges_on_the_labelled_val_split_and_records_both_fingerprints(trained, tmp_path):
    import json

    data, ckpt, _ = trained
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["pipeline", "--ckpt_path", str(ckpt), "--dataset", "imagenet",
                                    "--data_dir", str(data), "--formats", "onnx,onnx-int8",
                                    "--target", "x86-edge-ort-1t", "--bench-seconds", "0.2",
                                    # the post-training artifact's evidence is tested here:
                                    # QAT (--qat auto) would replace a missed budget's artifact
                                    "--qat", "off", "-o", str(run)])
    assert "Traceback" not in res.output
    rec = json.loads((run / "run.json").read_text())
    parity = rec["stages"]["parity"]["metrics"]
    fps = parity["fingerprints"]
    assert fps["parity_labelled"] and fps["parity_samples"] == 120 and "split val" in fps["parity_source"]
    assert "split train" in fps["calibration_source"] and fps["shared_images"] == 0
    assert len(fps["calibration"]) == 64 and fps["calibration"] != fps["parity"]
    rows = {(r["artifact"], r["engine"]): r for r in parity["pairs"]}
    int8 = rows[("onnx-int8", "onnxruntime")]
    assert int8["acc_delta"] and int8["n"] == 120
    assert int8["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    # an INCONCLUSIVE (or failing) pair fails the run by default, and says why
    assert (res.exit_code == 0) == all(r["verdict"] == "PASS" for r in rows.values())
    if int8["verdict"] == "INCONCLUSIVE":
        assert f"INCONCLUSIVE, ~{int8['samples_needed']} labelled val images" in res.output
    assert set(parity["int8"]["latency_ms"]) >= {"fp32", "int8_all"}
    report = (run / "report.md").read_text()
    assert "shared calibration/parity images | 0" in report and "held-out drop" in report
