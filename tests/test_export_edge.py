"""Edge formats (OpenVINO, MNN, ncnn): real conversions run in the real engines."""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from conftest_export import LABELS, MODEL, NUM_CLASSES, SIZE, make_checkpoint
from strict import STRICT, missing

# openvino, MNN and ncnn come with the `test` extra; pnnx (ncnn's converter) does not,
# because its PyPI metadata pulls in torch, nor does TensorFlow (tflite, ~2.6 GB): without
# them those cases are skipped, visibly, with the extra to install.
_NEEDS = {"openvino": ("openvino",), "mnn": ("MNN",), "ncnn": ("ncnn", "pnnx"),
          "tflite": ("onnx2tf", "tensorflow", "tf_keras", "ai_edge_litert")}
AVAILABLE = [f for f, mods in _NEEDS.items() if all(importlib.util.find_spec(m) for m in mods)]
# CI installs every one but tflite (TensorFlow, ~2.6 GB): there a missing one fails
# (tests/strict.py); tflite may skip anywhere, saying why.
EDGE_PARAMS = [pytest.param(f, marks=pytest.mark.skipif(
    f not in AVAILABLE and (f == "tflite" or not STRICT),
    reason=f"{' / '.join(_NEEDS[f])} not installed (pip install \"shufflenet-toolchain[{f}]\")"
           + (": CI does not install TensorFlow" if f == "tflite" else ""))) for f in _NEEDS]


@pytest.fixture(scope="module")
def edge_exports(tmp_path_factory):
    from exporters import export_checkpoint

    ckpt = make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")
    out = tmp_path_factory.mktemp("edge")
    # a *relative* output folder, as `shufflenet pipeline -o runs/x` gives: converters that
    # run in their own working directory (pnnx, onnx2tf) once failed on relative paths
    cwd = os.getcwd()
    os.chdir(out.parent)
    try:
        results = export_checkpoint(ckpt, AVAILABLE, out.name)
        return ckpt, {r.format: r.__class__(**{**r.to_dict(), "path": str(out.parent / r.path),
                                               "files": [str(out.parent / f) for f in r.files]})
                      for r in results}
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def reference(edge_exports):
    import mindspore as ms

    from shufflenet.checkpoint import load_checkpoint_file
    from shufflenet.data.preprocess import EvalTransform, sample_photos
    from shufflenet.models import create_model

    net = create_model(MODEL, num_classes=NUM_CLASSES)
    load_checkpoint_file(net, edge_exports[0])
    net.set_train(False)
    x = np.stack([EvalTransform(SIZE)(img) for _, img in sample_photos()[:3]]).astype(np.float32)
    return x, net(ms.Tensor(x)).asnumpy()


def _exported(edge_exports, fmt):
    """(checkpoint, export result) for ``fmt``; missing (fails under CI's strict mode) without its tools."""
    if fmt not in AVAILABLE:
        missing(f"{' / '.join(_NEEDS[fmt])} not installed (pip install \"shufflenet-toolchain[{fmt}]\")")
    ckpt, results = edge_exports
    return ckpt, results[fmt]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", EDGE_PARAMS)
def test_edge_format_round_trip_and_metadata(edge_exports, reference, fmt):
    from exporters.formats import FORMATS
    from exporters.metadata import read_artifact_metadata
    from exporters.smoke import run_artifact
    from shufflenet.checkpoint import sha256_file

    ckpt, r = _exported(edge_exports, fmt)
    for f in r.files:
        assert os.path.getsize(f) > 0
    x, ref = reference
    got = run_artifact(fmt, r.path, x)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() / np.abs(ref).max() <= FORMATS[fmt].tolerance
    assert (got.argmax(1) == ref.argmax(1)).all()
    meta = read_artifact_metadata(r.path)
    assert meta["format"] == fmt and meta["labels"] == LABELS
    assert meta["source_sha256"] == sha256_file(ckpt)
    assert meta["library_versions"]  # engine version recorded
    assert r.path + ".meta.json" in r.files


@pytest.mark.slow
@pytest.mark.parametrize("fmt", [p for p in EDGE_PARAMS if p.values[0] != "tflite"])
def test_edge_sidecar_contract_is_checked_by_parity(edge_exports, fmt, tmp_path):
    """The labels/preprocessing an app reads from an edge format's sidecar are judged too."""
    import json
    import shutil

    from shufflenet.artifact import sidecar_path
    from toolchain.parity import run_parity

    ckpt, r = _exported(edge_exports, fmt)
    for f in r.files:
        shutil.copy(f, tmp_path)
    copy = tmp_path / os.path.basename(r.path)
    side = sidecar_path(copy)
    meta = json.loads(side.read_text())
    side.write_text(json.dumps(dict(meta, labels=LABELS[::-1], channel_order="BGR")))
    report = run_parity(ckpt, [str(copy)], random=2, progress=False, localize=False)
    pair = report.pairs[0]
    assert pair.status == "FAIL" and not report.passed, pair.summary()
    assert "labels: artifact [digit9" in pair.summary() and "channel_order: artifact BGR" in pair.summary()


def test_ncnn_needs_pnnx_extra_message(tmp_path, monkeypatch):
    import exporters.formats as formats
    from exporters import export_checkpoint
    from shufflenet.errors import ExportError

    monkeypatch.setattr(formats, "module_finder", lambda name: None)
    with pytest.raises(ExportError, match=r'needs ncnn, pnnx.*shufflenet-toolchain\[ncnn\]'):
        export_checkpoint(tmp_path / "x.ckpt", "ncnn", tmp_path)
