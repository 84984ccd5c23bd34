"""End-to-end parity: real checkpoint, real exports, real engines, real images."""
import json
import xml.etree.ElementTree as ET

import conftest_parity as H
import numpy as np
import pytest
from click.testing import CliRunner
from strict import require_module

from toolchain.cli import main
from toolchain.parity import load_profile, resolve_inputs, run_parity

BROKEN_BLOCK = 5          # features.5: a stride-1 unit in stage 3
FOLDED_BLOCK = 9


@pytest.fixture(scope="module")
def arts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parity")
    ckpt = H.make_checkpoint(root / "tiny.ckpt")
    # int8-all, the same file on every run: the int8 tests below judge single images
    files = H.export_artifacts(ckpt, root / "out", int8_max_drop_pp=5.0)
    # one BatchNorm's running mean shifted in the raw export (BN still a node there)
    files["broken-bn"] = H.edit_initializer(
        files["onnx-raw"], root / "broken_bn.onnx",
        f"features.{BROKEN_BLOCK}.branch_main.4.moving_mean", lambda a: a + 3.0)
    # one conv weight flipped in the optimised export (BN folded into it)
    files["broken-conv"] = H.edit_initializer(
        files["onnx"], root / "broken_conv.onnx",
        f"features.{FOLDED_BLOCK}.branch_main.5.weight", lambda a: -a)
    return ckpt, files, root


def _cli(*args):
    return CliRunner().invoke(main, ["parity", *map(str, args)])


@pytest.mark.slow
def test_fp32_onnx_and_mindir_pass_on_real_photos(arts):
    ckpt, files, _ = arts
    report = run_parity(ckpt, [files["onnx"], files["onnx-raw"], files["mindir"], files["onnx-fp16"]],
                        engines=["onnxruntime", "mindir"], progress=False)
    assert report.passed, [p.summary() for p in report.pairs]
    assert [(p.format, p.engine) for p in report.pairs] == [
        ("onnx", "onnxruntime"), ("onnx-raw", "onnxruntime"), ("mindir", "mindir"),
        ("onnx-fp16", "onnxruntime")]
    fp16 = report.pairs.pop()
    assert fp16.profile["name"] == "fp16" and 1e-4 < fp16.metrics["max_rel_error"] < 3e-2
    for pair in report.pairs:
        assert pair.profile["name"] == "fp32"
        assert pair.metrics["max_rel_error"] < 1e-4
        assert pair.metrics["top1_agreement"] == 1.0
        assert pair.source_matches_checkpoint is True
        assert pair.divergence is None
    inputs = report.inputs
    assert inputs["kind"] == "photos" and inputs["samples"] >= 2
    assert len(inputs["images"]) == inputs["samples"]
    assert all(len(i["sha256"]) == 64 for i in inputs["images"])
    assert inputs["preprocessing"]["image_size"] == H.SIZE


@pytest.mark.slow
def test_int8_passes_its_profile_and_would_fail_fp32(arts):
    # 48 images cannot prove int8's 2 pp margin: at best INCONCLUSIVE, passed only when allowed.
    # A few images decide FAIL here (a net loss of 1/48 > 2 pp; 40/48 agreeing < 0.85): the
    # searched artifact, whose fp32 layers depended on timings, once lost one net image in CI.
    # int8-all of the seeded checkpoint is the same file every run. Measured: 42/48 agree,
    # 1 lost, 2 gained (two more flips the wrong way to FAIL); the closest top-1 call of the 48
    # leads by 0.4 % of its largest logit, far above run-to-run float noise.
    ckpt, files, _ = arts
    from exporters.metadata import read_artifact_metadata

    search = read_artifact_metadata(files["onnx-int8"])["export_options"]["int8"]
    assert (search["method"], search["fp32_layers"], search["stopped"]) == ("minmax", [], "budget met")
    report = run_parity(ckpt, [files["onnx-int8"]], engines=["onnxruntime"], dataset="demo",
                        samples=48, localize=False, progress=False, allow_inconclusive=True)
    pair = report.pairs[0]
    assert pair.profile["name"] == "int8"
    assert report.passed, pair.summary()
    assert pair.status == "INCONCLUSIVE" and pair.samples_needed > 48, pair.summary()
    acc = pair.metrics["accuracy"]
    assert acc["n"] == 48 and acc["ci_low"] <= acc["delta"] <= acc["ci_high"]
    assert acc["reference_accuracy"] > 0.2            # the test net really classifies digits
    # the p-value and delta follow from this run's own discordant pairs (was 0 <= p <= 1)
    from toolchain.parity import mcnemar_exact

    assert acc["mcnemar_p"] == pytest.approx(mcnemar_exact(acc["lost"], acc["gained"]))
    assert acc["delta"] == pytest.approx((acc["gained"] - acc["lost"]) / acc["n"])
    fp32 = {c.gate for c in load_profile("fp32").evaluate(pair.metrics) if not c.passed}
    assert "max_rel_error" in fp32 and "min_cosine" in fp32


@pytest.mark.slow
def test_int8_judged_on_its_own_calibration_images_fails(arts):
    # the int8 export calibrated on demo train digits; parity on that split is no evidence.
    # Before, standalone parity judged it there without a word (and passed with
    # --allow-inconclusive); only the pipeline checked that the two sets are disjoint.
    ckpt, files, _ = arts
    seen = run_parity(ckpt, [files["onnx-int8"]], engines=["onnxruntime"], dataset="demo",
                      split="train", samples=48, localize=False, progress=False,
                      allow_inconclusive=True)
    pair = seen.pairs[0]
    gate = [c for c in pair.checks if c.gate == "unseen_images"]
    assert gate and gate[0].state == "FAIL" and gate[0].value >= 1, pair.summary()
    assert pair.status == "FAIL" and not seen.passed
    assert "calibrated or tuned this artifact" in pair.summary()
    unseen = run_parity(ckpt, [files["onnx-int8"]], engines=["onnxruntime"], dataset="demo",
                        split="val", samples=48, localize=False, progress=False,
                        allow_inconclusive=True)
    assert not [c for c in unseen.pairs[0].checks if c.gate == "unseen_images"]


@pytest.mark.slow
def test_broken_artifacts_name_their_first_divergent_layer(arts):
    ckpt, files, _ = arts
    report = run_parity(ckpt, [files["broken-bn"], files["broken-conv"]], engines=["onnxruntime"],
                        samples=4, progress=False)
    assert not report.passed
    bn, conv = report.pairs
    assert bn.status == conv.status == "FAIL"
    # raw export: BN is a node, so the exact sub-layer is named
    assert bn.divergence.first_divergent == f"features.{BROKEN_BLOCK}.branch_main.4"
    errors = {row["layer"]: row["rel_rms_error"] for row in bn.divergence.layers}
    assert all(errors[f"features.{i}"] < 1e-4 for i in range(BROKEN_BLOCK))
    assert errors[f"features.{BROKEN_BLOCK}"] > 0.1
    # optimised export: BN folded into the conv, named as conv+BN of that block
    assert conv.divergence.first_divergent.startswith(f"features.{FOLDED_BLOCK}.branch_main.5+6")
    assert f"features.{FOLDED_BLOCK}" in report.to_dict()["pairs"][1]["divergence"]["first_divergent"]


@pytest.mark.parametrize("fmt", ["onnx", "onnx-raw", "onnx-fp16", "onnx-int8"])
def test_every_onnx_variant_maps_every_layer(arts, fmt):
    import onnx

    from toolchain.parity.layers import onnx_layer_tensors, onnx_sublayer_tensors

    _, files, _ = arts
    model = onnx.load(str(files[fmt]))
    mapping, notes = onnx_layer_tensors(model, n_blocks=16)
    assert notes == []
    assert list(mapping) == ["first_conv", "max_pool"] + [f"features.{i}" for i in range(16)] + [
        "conv_last", "classifier"]
    assert len(set(mapping.values())) == len(mapping)
    sub = onnx_sublayer_tensors(model, "features.5")
    if fmt == "onnx-raw":      # BN still a node: conv and BN of every branch cell
        assert sorted(sub) == [f"features.5.branch_main.{j}" for j in (0, 1, 3, 4, 5, 6)]
    elif fmt == "onnx":        # BN folded: each conv stands for conv + BN
        assert sorted(sub) == [f"features.5.branch_main.{j}" for j in (1, 4, 6)]


def test_mindir_layers_reported_as_not_available(arts):
    from toolchain.parity.layers import localize_divergence

    ckpt, files, _ = arts
    from shufflenet.artifact import resolve_artifact

    result = localize_divergence(ckpt, resolve_artifact(files["mindir"]),
                                 np.zeros((1, 3, 64, 64), np.float32), threshold=1e-3)
    assert result.available is False and "MindIR" in result.reason


@pytest.mark.slow
def test_cli_failure_prints_table_writes_reports_and_exits_1(arts):
    ckpt, files, root = arts
    junit, md, js = root / "r.xml", root / "r.md", root / "r.json"
    result = _cli(ckpt, files["broken-bn"], "--engine", "onnxruntime", "--samples", "2",
                  "--junit", junit, "--report", md, "--json-out", js)
    assert result.exit_code == 1
    assert "status" in result.stdout and "FAIL" in result.stdout      # the table came first
    assert "Traceback" not in result.output
    assert "parity failed for 1 of 1 pair(s)" in result.output
    case = ET.parse(junit).getroot().find("testcase")
    assert case.find("failure") is not None
    assert f"features.{BROKEN_BLOCK}.branch_main.4" in md.read_text()
    assert json.loads(js.read_text())["passed"] is False


@pytest.mark.slow
def test_cli_pass_json(arts):
    ckpt, files, _ = arts
    result = _cli(ckpt, files["onnx"], "--engine", "onnxruntime", "--samples", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["pairs"][0]["status"] == "PASS"
    assert data["inputs"]["samples"] == 3


def _bad_inputs(arts):
    ckpt, files, root = arts
    garbage = root / "garbage"
    garbage.mkdir(exist_ok=True)
    (garbage / "photo.png").write_bytes(b"not a png at all")
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    profile = root / "typo.yaml"
    profile.write_text("min_cosin: 0.9\n")
    onnx = files["onnx"]
    return {
        "other-model": ([H.edit_metadata(onnx, root / "x1.onnx", model="shufflenet_v2_x1_0")],
                        [], "export of shufflenet_v2_x1_0"),
        "class-count": ([H.edit_metadata(onnx, root / "c5.onnx", num_classes=5)], [],
                        "has 5 classes but the checkpoint has 10"),
        "no-metadata": ([H.edit_metadata(onnx, root / "bare.onnx", drop=True)], [],
                        "carries no shufflenet metadata"),
        "preprocessing": ([H.edit_metadata(onnx, root / "p.onnx", image_size=96)], [],
                          "deployment contract: resize"),
        "unreadable-images": ([onnx], ["--images", garbage], "cannot read image"),
        "empty-folder": ([onnx], ["--images", empty], "no images"),
        "missing-folder": ([onnx], ["--dataset", root / "nope"], "not found"),
        "profile-typo": ([onnx], ["--profile", profile], "unknown key"),
        "two-sources": ([onnx], ["--images", empty, "--dataset", "demo"], "either --images or --dataset"),
        "missing-ckpt": (None, [], "not found"),
    }


BAD = ["other-model", "class-count", "no-metadata", "preprocessing", "unreadable-images",
       "empty-folder", "missing-folder", "profile-typo", "two-sources", "missing-ckpt"]


@pytest.mark.parametrize("case", BAD)
def test_bad_inputs_give_one_clear_line(arts, case):
    ckpt, files, root = arts
    artifacts, extra, message = _bad_inputs(arts)[case]
    if artifacts is None:
        ckpt, artifacts = root / "missing.ckpt", [files["onnx"]]
    result = _cli(ckpt, *artifacts, "--engine", "onnxruntime", "--samples", "2", *extra)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert message in result.output
    assert result.output.count("Error:") == 1


def test_unknown_engine_is_a_usage_error(arts):
    ckpt, files, _ = arts
    result = _cli(ckpt, files["onnx"], "--engine", "tensorrt")
    assert result.exit_code == 2 and "unknown engine" in result.output


def test_folder_datasets_labelled_and_flat(tmp_path):
    from PIL import Image

    from shufflenet.data.demo import demo_arrays
    from shufflenet.errors import DataError

    images, labels = demo_arrays("val", 32)
    for i in range(9):
        d = tmp_path / "ds" / "val" / str(labels[i])
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(d / f"{i}.png")
        (tmp_path / "flat").mkdir(exist_ok=True)
        Image.fromarray(images[i]).save(tmp_path / "flat" / f"{i}.png")
    labelled = resolve_inputs(dataset=tmp_path / "ds", split="val", model_labels=H.ckpt_metadata()["labels"],
                              num_classes=10)
    assert labelled.labelled and len(labelled) == 9
    assert sorted(labelled.labels) == sorted(int(v) for v in labels[:9])
    from shufflenet.data.preprocess import EvalTransform

    batch = next(labelled.batches(EvalTransform(image_size=32), 4))
    assert batch.x.shape == (4, 3, 32, 32) and batch.labels.shape == (4,)
    flat = resolve_inputs(dataset=tmp_path / "flat", samples=5)
    assert not flat.labelled and len(flat) == 5
    with pytest.raises(DataError, match="do not match the model's labels"):
        resolve_inputs(dataset=tmp_path / "ds", model_labels=["a", "b"], num_classes=2)
    with pytest.raises(DataError, match="class folders but the model has 2"):
        resolve_inputs(dataset=tmp_path / "ds", model_labels=["0", "1"], num_classes=2)


def test_folder_names_that_are_not_the_labels_are_refused_not_guessed(tmp_path):
    # 4 folders for a 4-class model, named otherwise: they were mapped by sorted order
    # (a_gravel -> brick, ...) and parity reported accuracies against wrong labels
    from PIL import Image

    from shufflenet.errors import DataError

    labels = ["brick", "coins", "grass", "gravel"]
    for name in ("d_brick", "c_coins", "b_grass", "a_gravel"):
        (tmp_path / "ds" / "val" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "ds" / "val" / name / "0.png")
    with pytest.raises(DataError, match=r"do not match the model's labels \(brick, coins, grass, "
                                        r"gravel\) by position \(a_gravel, b_grass, c_coins, d_brick"):
        resolve_inputs(dataset=tmp_path / "ds", split="val", model_labels=labels, num_classes=4)
    # a missing split names the splits there instead of taking train/ and val/ for classes
    with pytest.raises(DataError, match="has no vall/ split"):
        resolve_inputs(dataset=tmp_path / "ds", split="vall", model_labels=labels, num_classes=4)
    # a checkpoint without labels ("0".."3"): sorted order, MindCV's convention for wnid folders
    unnamed = resolve_inputs(dataset=tmp_path / "ds", split="val",
                             model_labels=[str(i) for i in range(4)], num_classes=4)
    assert sorted(zip(unnamed.names, unnamed.labels)) == [
        ("a_gravel/0.png", 0), ("b_grass/0.png", 1), ("c_coins/0.png", 2), ("d_brick/0.png", 3)]


def test_random_tensors_only_on_request():
    rnd = resolve_inputs(random=3, image_size=32)
    assert rnd.kind == "random" and len(rnd) == 3 and not rnd.labelled
    x = next(rnd.batches(None, 8)).x
    assert x.shape == (3, 3, 32, 32)
    assert resolve_inputs(samples=2).kind == "photos"     # the default is real photos


def _openvino_with_bf16():
    ov = require_module("openvino", "extra 'openvino'")
    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in caps:
        pytest.skip("this CPU has no bf16: OpenVINO would run f32 whatever the hint")


@pytest.mark.slow
def test_engine_specific_fault_is_localised_on_that_engine(arts):
    """OpenVINO forced to bf16 on an fp32 file: the fp32 gate fails and the layer probe
    runs on OpenVINO itself, naming the stem where the rounding starts."""
    _openvino_with_bf16()
    ckpt, files, _ = arts
    report = run_parity(ckpt, [files["onnx"]], engines=["openvino"], samples=4, progress=False,
                        engine_options={"openvino": {"inference_precision": "bf16"}})
    pair = report.pairs[0]
    assert pair.status == "FAIL"
    assert pair.divergence.engine == "openvino"
    assert pair.divergence.first_divergent.startswith("first_conv")
    # and the same file on the same engine at f32 passes
    assert run_parity(ckpt, [files["onnx"]], engines=["openvino"], samples=4, progress=False).passed


def test_engine_option_syntax_is_checked(arts):
    ckpt, files, _ = arts
    result = _cli(ckpt, files["onnx"], "--engine-option", "inference_precision=bf16")
    assert result.exit_code == 2 and "ENGINE.KEY=VALUE" in result.output


def test_engine_failure_is_an_error_row_not_a_crash(arts):
    """A file the engine cannot run (a conv weight of the wrong shape) is reported, not raised."""
    ckpt, files, root = arts
    corrupt = H.edit_initializer(files["onnx"], root / "corrupt.onnx",
                                 f"features.{FOLDED_BLOCK}.branch_main.5.weight", lambda a: a[:, :1].copy())
    result = _cli(ckpt, corrupt, files["onnx"], "--engine", "onnxruntime", "--samples", "2")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith(("corrupt", "tiny", "shuffle"))]
    assert rows[0].rstrip().endswith("ERROR") and rows[1].rstrip().endswith("PASS")
    assert "onnxruntime failed to run corrupt.onnx" in result.output


def test_deployment_contract_mismatch_fails_naming_the_field(arts):
    # the logits are the checkpoint's, bit for bit; the metadata an app reads is not
    ckpt, files, root = arts
    wrong_labels = H.edit_metadata(files["onnx"], root / "labels.onnx",
                                   labels=[str(9 - i) for i in range(10)])
    bgr = H.edit_metadata(files["onnx"], root / "bgr.onnx", channel_order="BGR",
                          mean=[103.53, 116.28, 123.675])
    report = run_parity(ckpt, [files["onnx"], wrong_labels, bgr], engines=["onnxruntime"],
                        samples=3, progress=False, localize=False)
    status = {p.artifact: p for p in report.pairs}
    assert status[str(files["onnx"])].status == "PASS"
    bad = status[str(wrong_labels)]
    assert bad.status == "FAIL" and bad.metrics["max_rel_error"] < 1e-4
    assert bad.summary().startswith("deployment contract: labels: artifact [9, 8, 7")
    assert "mean:" in status[str(bgr)].summary() and "channel_order:" in status[str(bgr)].summary()
    assert not report.passed and report.verdict == "FAIL"


def test_inconclusive_pair_fails_by_default_and_passes_when_allowed(arts, tmp_path):
    # int8 on 6 labelled digits: whatever it does, 6 images cannot prove a 2 pp margin
    ckpt, files, _ = arts
    only_accuracy = tmp_path / "acc.yaml"
    only_accuracy.write_text("base: int8\nmin_top1_agreement: null\nmin_top5_overlap: null\n"
                             "min_mean_cosine: null\n")
    args = [ckpt, files["onnx-int8"], "--engine", "onnxruntime", "--dataset", "demo",
            "--samples", "6", "--no-localize", "--junit", tmp_path / "j.xml",
            "--profile", only_accuracy]
    result = _cli(*args)
    assert result.exit_code == 1 and "INCONCLUSIVE (n>=" in result.stdout, result.output
    assert "samples would settle it" in result.output
    assert ET.parse(tmp_path / "j.xml").getroot().find("testcase/failure").get("type") == "Inconclusive"
    result = _cli(*args, "--allow-inconclusive")
    assert result.exit_code == 0, result.output
    assert ET.parse(tmp_path / "j.xml").getroot().find("testcase/skipped") is not None


def test_cli_text_output_says_an_artifact_was_calibrated_on_stand_in_photos(arts, tmp_path):
    ckpt, files, root = arts
    from exporters.metadata import read_artifact_metadata

    opts = dict(read_artifact_metadata(files["onnx"]).get("export_options") or {})
    opts["calibration"] = {"stand_in": True, "note": "calibrated on stand-in photos: accuracy unverified"}
    stand_in = H.edit_metadata(files["onnx"], tmp_path / "standin.onnx", export_options=opts)
    res = CliRunner().invoke(main, ["parity", str(ckpt), str(stand_in), "--engine", "onnxruntime",
                                    "--samples", "2"])
    assert "note: standin.onnx: calibrated on stand-in photos: accuracy unverified" in res.stdout, res.output
