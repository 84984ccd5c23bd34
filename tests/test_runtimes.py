"""Every runner against the MindSpore reference on the same real photos, plus the registry."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest_runtimes import BATCH, NUM_CLASSES, SIZE, built_artifacts, real_batch
from strict import missing

import runtimes
from shufflenet.errors import RuntimeEngineError

# (engine, artifact format, relative tolerance vs the MindSpore checkpoint)
CASES = [("mindir", "mindir", 1e-4), ("onnxruntime", "onnx", 1e-4), ("openvino", "onnx", 1e-3),
         ("openvino", "openvino", 1e-3), ("mnn", "mnn", 1e-3), ("ncnn", "ncnn", 1e-3)]


@pytest.fixture(scope="module")
def reference():
    """The checkpoint run by the MindSpore runner on real photos: (batch, logits)."""
    ckpt, _ = built_artifacts()
    with runtimes.create_runner("mindspore", ckpt) as runner:
        x = real_batch(runner.metadata, BATCH)
        logits = runner.infer(x)
        assert runner.info().engine == "mindspore" and runner.last_inference_time > 0
    return x, logits


def _artifact(fmt):
    arts = built_artifacts()[1]
    if fmt not in arts:
        missing(f"no {fmt} artifact: its engine/converter is not installed here")
    return arts[fmt]


@pytest.mark.parametrize("engine,fmt,tol", CASES, ids=[f"{e}-{f}" for e, f, _ in CASES])
def test_runner_matches_mindspore_reference(engine, fmt, tol, reference):
    if engine not in runtimes.available_engines():
        missing(f"engine {engine} not installed")
    x, ref = reference
    assert np.abs(ref[0] - ref[1]).max() > 1e-3 * np.abs(ref).max()  # images really differ
    with runtimes.create_runner(engine, _artifact(fmt), threads=1) as runner:
        out = runner.infer(x)
        info = runner.info()
        spec = runner.input_spec()
    assert out.shape == ref.shape and out.dtype == np.float32
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < tol, f"{engine} on {fmt}: relative error {rel:.2e} >= {tol}"
    assert (out.argmax(1) == ref.argmax(1)).all()
    assert info.engine == engine and info.engine_version not in ("", "unknown")
    assert info.precision == "fp32" and info.threads == 1
    assert spec.shape[1:] == (3, 64, 64)


def test_runner_input_checks_and_lifecycle(reference):
    x, _ = reference
    runner = runtimes.create_runner("onnxruntime", _artifact("onnx"), threads=1)
    with pytest.raises(RuntimeEngineError, match="not active"):
        runner.infer(x)
    with runner:
        with pytest.raises(RuntimeEngineError, match="does not match"):
            runner.infer(x[:, :, :32, :32])
        with pytest.raises(RuntimeEngineError, match="NCHW"):
            runner.infer(x[0])
        assert runner.infer(x.astype(np.float64)).shape == (BATCH, 10)  # cast, not refused
        assert runner.last_inference_time > 0
    assert not runner.is_active


def test_onnxruntime_options(reference):
    x, ref = reference
    onnx = _artifact("onnx")
    with runtimes.create_runner("onnxruntime", onnx, threads=2, graph_optimization="disable",
                                inter_op_threads=1) as r:
        assert np.abs(r.infer(x) - ref).max() / np.abs(ref).max() < 1e-4
    with pytest.raises(RuntimeEngineError, match="graph_optimization"):
        runtimes.create_runner("onnxruntime", onnx, graph_optimization="max").activate()
    with pytest.raises(RuntimeEngineError, match="not available"):
        runtimes.create_runner("onnxruntime", onnx, providers=["NoSuchExecutionProvider"]).activate()


def test_openvino_runs_f32_by_default():
    if "openvino" not in runtimes.available_engines():
        missing("openvino not installed")
    with runtimes.create_runner("openvino", _artifact("openvino")) as r:
        hint = r._compiled.get_property("INFERENCE_PRECISION_HINT")
    assert "float32" in str(hint) or "f32" in str(hint)


def test_mnn_keeps_stdout_clean(capfd, reference):
    """MNN prints from C++ on stdout; that must not reach stdout (it would corrupt --json)."""
    if "mnn" not in runtimes.available_engines():
        missing("MNN not installed")
    with runtimes.create_runner("mnn", _artifact("mnn"), threads=1) as r:
        r.infer(reference[0])
    assert capfd.readouterr().out == ""


def test_registry():
    ckpt, arts = built_artifacts()
    engines = runtimes.available_engines()
    assert {"mindspore", "mindir", "onnxruntime"} <= set(engines)
    assert set(engines) <= set(runtimes.ENGINES)
    assert runtimes.engines_for_artifact(ckpt) == ["mindspore"]
    assert "onnxruntime" in runtimes.engines_for_artifact(arts["onnx"])
    assert runtimes.engines_for_artifact(arts["mindir"]) == ["mindir"]
    assert set(runtimes.engines_for_artifact(arts["onnx"], installed_only=False)) == {"onnxruntime",
                                                                                      "openvino"}
    files = list(runtimes.resolve_artifact(arts["mindir"]).files)
    assert [f.name for f in files] == ["shufflenet_v2_x0_5.mindir", "shufflenet_v2_x0_5.mindir.meta.json"]
    if "openvino" in arts:
        assert {f.suffix for f in runtimes.resolve_artifact(arts["openvino"]).files} == {".xml", ".bin", ".json"}


def test_registry_errors(tmp_path):
    _, arts = built_artifacts()
    with pytest.raises(RuntimeEngineError, match="unknown engine 'tensorrt'; choose from"):
        runtimes.create_runner("tensorrt", arts["onnx"])
    with pytest.raises(RuntimeEngineError, match="cannot run a 'mindir' artifact.*mindir"):
        runtimes.create_runner("onnxruntime", arts["mindir"])
    with pytest.raises(RuntimeEngineError, match="has no option.*graph_optimisation.*it takes"):
        runtimes.create_runner("onnxruntime", arts["onnx"], graph_optimisation="all")
    with pytest.raises(RuntimeEngineError, match="artifact not found"):
        runtimes.create_runner("onnxruntime", tmp_path / "nope.onnx")


def test_missing_engine_names_pip_extra(tmp_path):
    """LiteRT is not installed here (no TensorFlow-free converter): the error names the extra."""
    if "tflite" in runtimes.available_engines():
        pytest.skip("ai_edge_litert is installed here")
    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"TFL3")
    (tmp_path / "m.tflite.meta.json").write_text(json.dumps({"format": "tflite", "precision": "fp32"}))
    with pytest.raises(RuntimeEngineError, match=r"tflite.*not installed.*shufflenet-toolchain\[tflite\]"):
        runtimes.create_runner("tflite", fake)


def test_mindir_corrupt_file_is_a_clear_error(tmp_path):
    _, arts = built_artifacts()
    bad = tmp_path / "bad.mindir"
    bad.write_bytes(arts["mindir"].read_bytes()[:1000])
    (tmp_path / "bad.mindir.meta.json").write_text(
        (arts["mindir"].parent / (arts["mindir"].name + ".meta.json")).read_text())
    with pytest.raises(RuntimeEngineError, match="mindir: cannot load"):
        runtimes.create_runner("mindir", bad).activate()


def test_mindspore_graph_mode_matches_pynative_and_restores_context(reference):
    import mindspore as ms

    x, ref = reference
    before = ms.get_context("mode")
    with runtimes.create_runner("mindspore", built_artifacts()[0], mode="graph") as r:
        assert ms.get_context("mode") == ms.GRAPH_MODE
        out = r.infer(x)
    assert ms.get_context("mode") == before
    assert np.abs(out - ref).max() / np.abs(ref).max() < 1e-5
    with pytest.raises(RuntimeEngineError, match="option mode: 'eager' is not one of 'pynative', 'graph'"):
        runtimes.create_runner("mindspore", built_artifacts()[0], mode="eager")


# -- the reference runner selects the CPU -------------------------------------
class _SpyMindSpore:
    """Records set_device calls, forwards nothing (the runner's helper is what is tested)."""

    def __init__(self):
        self.devices = []

    def set_device(self, name):
        self.devices.append(name)


def test_reference_runner_selects_the_cpu():
    from runtimes.mindspore_runner import _use_cpu

    spy = _SpyMindSpore()
    _use_cpu(spy)  # used to call itself; the RecursionError was swallowed as a RuntimeError
    assert spy.devices == ["CPU"]


def test_infer_pads_a_fixed_batch_artifact(tmp_path):
    """Padding to an artifact's fixed batch was written three times (the parity comparator,
    the layer probe, the int8 search); Runner.infer is now the one place: any batch size goes
    in, the last chunk is padded with copies and their outputs are dropped."""
    from exporters import export_checkpoint

    ckpt, arts = built_artifacts()
    (fixed,) = export_checkpoint(ckpt, "onnx", tmp_path, batch=3, image_size=SIZE)
    art = runtimes.resolve_artifact(fixed.path)
    assert art.metadata["input_shape"][0] == 3
    x = real_batch(art.metadata, 5)
    with runtimes.create_runner("onnxruntime", art, threads=1) as r:
        got = r.infer(x)                      # 5 = 3 + 2 (+1 padded copy, dropped)
        assert r.infer(x[:1]).shape == (1, NUM_CLASSES)
    with runtimes.create_runner("onnxruntime", arts["onnx"], threads=1) as dynamic:
        want = dynamic.infer(x)
    assert got.shape == (5, NUM_CLASSES)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
