"""Exporters: checkpoint -> MindIR / ONNX (raw, optimised, fp16, int8), via API and CLI.

Real MindSpore checkpoints, real ONNX files, real ONNX Runtime sessions, real photos.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest_export import LABELS, MODEL, NUM_CLASSES, SIZE, make_checkpoint

CORE = ["mindir", "onnx-raw", "onnx", "onnx-fp16", "onnx-int8"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    """The real photos shipped with scikit-learn/-image, as a folder of JPEG/PNG files."""
    from shufflenet.data.preprocess import sample_photos

    d = tmp_path_factory.mktemp("photos")
    for i, (name, img) in enumerate(sample_photos()):
        img.save(d / f"{i:02d}_{name.split('/')[-1].split('.')[0]}.{'jpg' if i % 2 else 'png'}")
    return d


@pytest.fixture(scope="module")
def exported(ckpt, photo_dir, tmp_path_factory):
    from exporters import export_checkpoint

    out = tmp_path_factory.mktemp("export")
    results = export_checkpoint(ckpt, CORE, out, calib_dir=photo_dir, calib_samples=16)
    return out, {r.format: r for r in results}


@pytest.fixture(scope="module")
def photos():
    from shufflenet.data.preprocess import EvalTransform, sample_photos

    t = EvalTransform(SIZE)
    return np.stack([t(img) for _, img in sample_photos()]).astype(np.float32)


@pytest.fixture(scope="module")
def reference(ckpt, photos):
    """The checkpoint's own MindSpore logits on the photos."""
    import mindspore as ms

    from shufflenet.checkpoint import load_checkpoint_file
    from shufflenet.models import create_model

    net = create_model(MODEL, num_classes=NUM_CLASSES)
    load_checkpoint_file(net, ckpt)
    net.set_train(False)
    return net(ms.Tensor(photos)).asnumpy()


def _ort(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


# -- the formats table -----------------------------------------------------------------

def test_formats_table_drives_parsing_help_and_readme():
    from exporters.formats import FORMATS, formats_help, formats_markdown, parse_formats

    assert parse_formats("onnx, onnx-int8,onnx") == ["onnx", "onnx-int8"]
    assert parse_formats(["mindir", "onnx-fp16"]) == ["mindir", "onnx-fp16"]
    md, helptext = formats_markdown(), formats_help()
    for name, spec in FORMATS.items():
        assert f"`{name}`" in md and name in helptext
        if spec.extra:
            assert f'shufflenet-toolchain[{spec.extra}]' in md


# -- round trips ------------------------------------------------------------------------

@pytest.mark.slow
def test_every_core_format_round_trips_within_its_tolerance(exported, photos, reference):
    from exporters.formats import FORMATS
    from exporters.smoke import run_artifact

    out, results = exported
    assert set(results) == set(CORE)
    for name, r in results.items():
        assert Path(r.path).exists() and r.path.startswith(str(out))
        assert r.sha256 == hashlib.sha256(Path(r.path).read_bytes()).hexdigest()
        assert r.seconds > 0 and r.smoke_error <= FORMATS[name].tolerance
        if name == "onnx-raw":
            continue  # batch baked in at 1
        got = run_artifact(name, r.path, photos)
        assert _rel(got, reference) <= FORMATS[name].tolerance, name
        if name != "onnx-int8":
            assert (got.argmax(1) == reference.argmax(1)).all(), name
    int8 = run_artifact("onnx-int8", results["onnx-int8"].path, photos)
    cos = (int8 * reference).sum() / np.linalg.norm(int8) / np.linalg.norm(reference)
    # a correct int8 export of this net measured cos >= 0.998 and agreement 1.0 on these
    # photos (seeds 0-2); a broken one (all-zero, mis-scaled, shuffled channels) fails
    assert cos > 0.99
    assert (int8.argmax(1) == reference.argmax(1)).mean() >= 0.9
    # nothing but the artifacts (+ sidecars) is left in the folder: no temp files
    assert sorted(p.name for p in out.iterdir()) == sorted(
        Path(f).name for r in results.values() for f in r.files)


@pytest.mark.slow
def test_onnx_is_optimised_and_checks_out(exported):
    import onnx

    out, results = exported
    model = onnx.load(results["onnx"].path)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert model.opset_import[0].version >= 13
    ops = Counter(n.op_type for n in model.graph.node)
    raw_ops = Counter(n.op_type for n in onnx.load(results["onnx-raw"].path).graph.node)
    assert raw_ops["BatchNormalization"] == 56 and raw_ops["Transpose"] == 13
    for gone in ("BatchNormalization", "Reshape", "Transpose", "Squeeze", "Identity", "Constant"):
        assert ops[gone] == 0, gone
    assert ops["Conv"] == raw_ops["Conv"]
    assert sum(ops.values()) < sum(raw_ops.values()) * 0.7
    assert onnx.load(results["onnx-raw"].path).opset_import[0].version == 11
    assert ops["Slice"] == 2 * raw_ops["Transpose"]  # one even + one odd selection per shuffle
    int8_ops = Counter(n.op_type for n in onnx.load(results["onnx-int8"].path).graph.node)
    assert int8_ops["Gather"] == 2 * raw_ops["Transpose"] and int8_ops["Transpose"] == 0
    assert int8_ops["QuantizeLinear"] > 0 and int8_ops["DequantizeLinear"] > 0
    fp16 = onnx.load(results["onnx-fp16"].path)
    assert fp16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert fp16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {t.data_type for t in fp16.graph.initializer if t.dims and len(t.dims) == 4} == {
        onnx.TensorProto.FLOAT16}


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "onnx-fp16", "onnx-int8"])
def test_dynamic_batch_1_3_8(exported, photos, fmt):
    out, results = exported
    sess = _ort(results[fmt].path)
    assert sess.get_inputs()[0].shape[0] == "batch"
    single = np.concatenate([sess.run(None, {"input": photos[i:i + 1]})[0] for i in range(8)])
    for n in (1, 3, 8):
        got = sess.run(None, {"input": photos[:n]})[0]
        assert got.shape == (n, NUM_CLASSES)
        np.testing.assert_allclose(got, single[:n], rtol=0, atol=1e-3 * np.abs(single).max())


@pytest.mark.slow
def test_metadata_in_every_artifact(exported, ckpt, photo_dir):
    from exporters.metadata import REQUIRED_FIELDS, read_artifact_metadata
    from shufflenet.checkpoint import sha256_file

    out, results = exported
    sha = sha256_file(ckpt)
    for name, r in results.items():
        meta = read_artifact_metadata(r.path)
        missing = [k for k in REQUIRED_FIELDS if k not in meta]
        assert not missing, (name, missing)
        assert meta["format"] == name and meta["precision"] == r.precision
        assert meta["model"] == MODEL and meta["num_classes"] == NUM_CLASSES
        assert meta["labels"] == LABELS and meta["image_size"] == SIZE
        assert meta["source_sha256"] == sha and meta["source_checkpoint"] == ckpt.name
        assert {"mindspore", "onnx", "onnxruntime"} <= set(meta["library_versions"])
        assert meta["export_options"]["batch"] == "dynamic"
    assert read_artifact_metadata(results["onnx"].path)["input_shape"] == [-1, 3, SIZE, SIZE]
    int8 = read_artifact_metadata(results["onnx-int8"].path)["export_options"]
    assert int8["calibration"]["kind"] == "folder"
    assert int8["calibration"]["samples"] == len(list(photo_dir.iterdir()))
    assert int8["per_channel"] is True and int8["calibration_method"] == "minmax"
    assert int8["int8"]["measured"] is False    # 11 unlabelled photos: none held out
    # MindIR cannot hold it: a sidecar next to it
    assert Path(results["mindir"].path + ".meta.json").exists()


@pytest.mark.slow
def test_reexport_gives_byte_identical_onnx(exported, ckpt, photo_dir, tmp_path):
    from exporters import export_checkpoint

    out, first = exported
    again = {r.format: r for r in export_checkpoint(
        ckpt, "onnx-raw,onnx,onnx-fp16,onnx-int8", tmp_path, calib_dir=photo_dir, calib_samples=16)}
    for name, r in again.items():
        assert r.sha256 == first[name].sha256, name


@pytest.mark.slow
def test_fixed_batch_and_fallback_to_options(tmp_path, photos):
    """No metadata in the checkpoint: model/num_classes come from the arguments."""
    from exporters import export_checkpoint
    from exporters.metadata import read_artifact_metadata

    bare = make_checkpoint(tmp_path / "bare.ckpt", with_metadata=False)
    (r,) = export_checkpoint(bare, "onnx", tmp_path / "out", model="x0_5", num_classes=10,
                             batch=3, image_size=SIZE)
    sess = _ort(r.path)
    assert sess.get_inputs()[0].shape == [3, 3, SIZE, SIZE]
    assert sess.run(None, {"input": photos[:3]})[0].shape == (3, NUM_CLASSES)
    meta = read_artifact_metadata(r.path)
    assert meta["model"] == MODEL and meta["labels"] == [str(i) for i in range(10)]
    assert meta["input_shape"] == [3, 3, SIZE, SIZE]


def test_calibration_sets(ckpt):
    from exporters.calibration import calibration_images
    from exporters.source import load_source
    from shufflenet.errors import ConfigError

    src = load_source(ckpt)
    x, described = calibration_images(src, dataset="demo:val", samples=5)
    assert x.shape == (5, 3, SIZE, SIZE) and x.dtype == np.float32
    assert (described["dataset"], described["samples"], described["stratified"]) == ("demo:val", 5, True)
    # no training data named in this checkpoint: the shipped photos, labelled as stand-ins
    x, described = calibration_images(src, samples=3)
    assert x.shape == (3, 3, SIZE, SIZE) and np.isfinite(x).all()
    assert described["stand_in"] is True and "accuracy unverified" in described["note"]
    with pytest.raises(ConfigError, match="unknown calibration dataset"):
        calibration_images(src, dataset="imagenet")


# -- bad inputs -------------------------------------------------------------------------

def test_missing_and_corrupt_checkpoint(tmp_path):
    from exporters import export_checkpoint
    from shufflenet.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        export_checkpoint(tmp_path / "nope.ckpt", "onnx", tmp_path)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x08\x01garbage" * 50)
    with pytest.raises(CheckpointError, match="corrupt"):
        export_checkpoint(bad, "onnx", tmp_path)


def test_unknown_format_and_bad_options(ckpt, tmp_path):
    from exporters import export_checkpoint
    from shufflenet.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown export format 'onnx-int4'"):
        export_checkpoint(ckpt, "onnx,onnx-int4", tmp_path)
    with pytest.raises(ConfigError, match="either --calib DIR or --dataset"):
        export_checkpoint(ckpt, "onnx-int8", tmp_path, dataset="demo", calib_dir=tmp_path)
    with pytest.raises(ConfigError, match="batch"):
        export_checkpoint(ckpt, "onnx", tmp_path, batch=0)
    with pytest.raises(ConfigError, match="ncnn always take one image per call"):
        export_checkpoint(ckpt, "onnx,ncnn", tmp_path, batch=4)
    assert not list(tmp_path.iterdir())


def test_wrong_num_classes_and_model(ckpt, tmp_path):
    from exporters import export_checkpoint
    from shufflenet.errors import CheckpointError

    with pytest.raises(CheckpointError, match="--num_classes 5 does not match"):
        export_checkpoint(ckpt, "onnx", tmp_path, num_classes=5)
    with pytest.raises(CheckpointError, match="--model shufflenet_v2_x1_0 does not match"):
        export_checkpoint(ckpt, "onnx", tmp_path, model="shufflenet_v2_x1_0")


def test_missing_extra_names_the_pip_extra(ckpt, tmp_path, monkeypatch):
    """Make the engine's import lookup fail (as on a machine without the extra)."""
    import exporters.formats as formats
    from exporters import export_checkpoint
    from shufflenet.errors import ExportError

    real = formats.module_finder
    monkeypatch.setattr(formats, "module_finder",
                        lambda name: None if name == "openvino" else real(name))
    with pytest.raises(ExportError, match=r'pip install "shufflenet-toolchain\[openvino\]"'):
        export_checkpoint(ckpt, "onnx,openvino", tmp_path)
    assert not list(tmp_path.iterdir())  # checked before any work


@pytest.mark.slow
def test_failed_smoke_check_leaves_no_file(ckpt, tmp_path, monkeypatch):
    """An artifact that fails its check never lands; an older file there is kept."""
    import dataclasses

    import exporters.formats as formats
    from exporters import export_checkpoint
    from shufflenet.errors import ExportError

    strict = dataclasses.replace(formats.FORMATS["onnx-fp16"], tolerance=1e-12)
    monkeypatch.setitem(formats.FORMATS, "onnx-fp16", strict)
    old = tmp_path / f"{MODEL}.fp16.onnx"
    old.write_bytes(b"previous export")
    with pytest.raises(ExportError, match="onnx-fp16: smoke parity failed"):
        export_checkpoint(ckpt, "onnx-fp16", tmp_path)
    assert old.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == [old.name]


# -- CLI --------------------------------------------------------------------------------

def _cli(args):
    from toolchain.cli import main

    return CliRunner().invoke(main, args)


@pytest.mark.slow
def test_cli_export_table_and_json(ckpt, tmp_path):
    res = _cli(["export", str(ckpt), "--format", "onnx", "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert "onnx" in res.output and "smoke rel. error" in res.output
    res = _cli(["export", str(ckpt), "-f", "onnx", "-o", str(tmp_path / "b"), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows[0]["format"] == "onnx" and Path(rows[0]["path"]).exists()


@pytest.mark.parametrize("args, message", [
    (["--format", "onnx,bogus"], "unknown export format 'bogus'"),
    (["--format", "onnx", "--batch", "many"], "neither a positive integer nor 'dynamic'"),
    (["--format", "onnx", "--num_classes", "7"], "--num_classes 7 does not match"),
    (["--format", "onnx", "--calib", "/nonexistent"], "only used by format"),
    (["--format", "onnx", "--calib-samples", "8"], "only used by format"),
    (["--format", "onnx-int8", "--calib", "/nonexistent"], "image folder not found"),
])
def test_cli_bad_input_is_one_clean_line(ckpt, tmp_path, args, message):
    res = _cli(["export", str(ckpt), "-o", str(tmp_path)] + args)
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)   # a clean exit, not an escaped exception


def test_cli_missing_checkpoint(tmp_path):
    res = _cli(["export", str(tmp_path / "missing.ckpt"), "-f", "onnx", "-o", str(tmp_path)])
    assert res.exit_code == 1
    assert "checkpoint not found" in res.output and "Traceback" not in res.output


# -- an output path under a file is one readable line ---------------------------
def test_export_output_under_a_file_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import main

    (tmp_path / "afile").write_text("x")
    ckpt = tmp_path / "missing-is-fine.ckpt"
    res = CliRunner().invoke(main, ["export", str(ckpt), "-f", "onnx", "-o",
                                    str(tmp_path / "afile" / "out")])
    assert res.exit_code == 1, res.output
    assert "afile is a file" in res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)   # a clean exit, not an escaped exception


# -- exported files get the permissions a plain write would give ---------------------
def test_exported_artifacts_follow_the_umask(tmp_path):
    import os
    import stat

    from exporters.export import _install

    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "m.onnx").write_text("x")
    os.chmod(stage / "m.onnx", 0o600)   # as a temp file would be
    out = tmp_path / "out"
    out.mkdir()
    old = os.umask(0o027)
    try:
        placed = _install([stage / "m.onnx"], out)
    finally:
        os.umask(old)
    assert stat.S_IMODE(placed[0].stat().st_mode) == 0o640   # was a fixed 0o644
