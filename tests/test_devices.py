"""Devices: the agent zipapp (the runners themselves) here, and on the emulated ARM64 device.

The host tests run the zipapp in a fresh local Python. The emulated tests
need ``shufflenet device setup arm64`` (CI's .ci/run builds it); without it
they skip here and fail under SHUFFLENET_STRICT.
"""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest_runtimes import built_artifacts, real_batch
from strict import missing

import runtimes
from runtimes.bundle import BUNDLED, agent_zipapp
from runtimes.devices import AgentSession, DeviceRunner, LocalDevice, device_for, device_info
from shufflenet.artifact import resolve_artifact
from shufflenet.errors import RuntimeEngineError

# (format, engine, options): every engine an edge device runs, at its precisions
EDGE_CASES = [("onnx", "onnxruntime", {}), ("mnn", "mnn", {}), ("mnn", "mnn", {"precision": "low"}),
              ("ncnn", "ncnn", {}), ("ncnn", "ncnn", {"fp16": True})]


def _cases():
    arts = built_artifacts()[1]
    out = [(arts[f], e, o) for f, e, o in EDGE_CASES
           if f in arts and e in runtimes.available_engines()]
    if "openvino" in arts and "openvino" in runtimes.available_engines():
        out.append((arts["openvino"], "openvino", {"inference_precision": "f32"}))
    return out


def test_zipapp_holds_the_runners_and_imports_no_toolchain():
    pyz = agent_zipapp()
    assert agent_zipapp() == pyz            # cached by content hash
    names = set(zipfile.ZipFile(pyz).namelist())
    assert set(BUNDLED) <= names and "__main__.py" in names
    assert not any(n.startswith(("toolchain/", "exporters/")) or "mindspore" in n for n in names)
    session = AgentSession(LocalDevice(), LocalDevice().stage([]))
    try:
        info = session.request({"op": "info", "modules": True})
        arts = built_artifacts()[1]
        session.request({"op": "load", "engine": "onnxruntime", "artifact": str(arts["onnx"]),
                         "metadata": resolve_artifact(arts["onnx"]).metadata})
        loaded = session.request({"op": "info", "modules": True})["modules"]
    finally:
        session.close()
    assert info["device"]["arch"] and info["engines"]["onnxruntime"]
    for forbidden in ("mindspore", "click", "yaml", "onnx", "toolchain", "exporters", "tqdm"):
        assert forbidden not in loaded, forbidden
    assert "onnxruntime" in loaded and "numpy" in loaded


@pytest.mark.parametrize("case", range(6))
def test_zipapp_agent_gives_the_local_runners_logits_bit_for_bit(case):
    cases = _cases()
    if case >= len(cases):
        pytest.skip("fewer engines installed here")
    path, engine, options = cases[case]
    x = real_batch(resolve_artifact(path).metadata, 2)
    with runtimes.create_runner(engine, path, threads=1, **options) as local:
        want = local.infer(x)
    with DeviceRunner(LocalDevice(), engine, path, threads=1, **options) as remote:
        got = remote.infer(x)
        info = remote.info()
    assert np.array_equal(got, want), np.abs(got - want).max()
    assert info.engine == engine and info.engine_version == local.info().engine_version
    assert remote.device["arch"] and remote.device["emulated"] is None


def test_target_options_reach_the_engine_on_the_device_or_are_rejected():
    onnx = built_artifacts()[1]["onnx"]
    with pytest.raises(RuntimeEngineError, match="has no option"):   # before anything starts
        DeviceRunner(LocalDevice(), "onnxruntime", onnx, light_mode=True)
    # a value only the engine itself can refuse: the refusal comes from the device's ORT
    runner = DeviceRunner(LocalDevice(), "onnxruntime", onnx,
                          providers=["NoSuchExecutionProvider"])
    with pytest.raises(RuntimeEngineError, match=r"agent on local: .*NoSuchExecutionProvider"):
        runner.activate()
    x = real_batch(resolve_artifact(onnx).metadata, 1)
    with DeviceRunner(LocalDevice(), "onnxruntime", onnx, graph_optimization="disable") as r:
        got = r.infer(x)
    with runtimes.create_runner("onnxruntime", onnx, graph_optimization="disable") as local:
        assert np.array_equal(local.infer(x), got)


def test_one_shot_job_and_errors_are_one_line(tmp_path):
    pyz = agent_zipapp()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"engine": "onnxruntime", "artifact": str(tmp_path / "nope.onnx"),
                               "input": str(tmp_path / "x.npy")}))
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 64, 64), np.float32))
    proc = subprocess.run([sys.executable, str(pyz), str(job)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stdout.strip().startswith("SHUFFLENET-AGENT-ERROR ") and "nope.onnx" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    with pytest.raises(RuntimeEngineError, match="emu:arm64"):
        device_for("emu:riscv")


# -- the emulated ARM64 device ----------------------------------------------------
def _emulated(cpu: str):
    from runtimes.emulated import DeviceError, load_device

    try:
        load_device("arm64")
    except DeviceError as exc:
        missing(str(exc))
    return device_for("emu:arm64", cpu=cpu)


@pytest.mark.slow
def test_emulated_device_is_aarch64_and_says_so():
    info = device_info(_emulated("cortex-a76"))
    dev = info["device"]
    assert dev["arch"] == "aarch64" and dev["cpu"] == "Cortex-A76"
    assert dev["emulated"] == "qemu:cortex-a76" and {"fp16", "dotprod"} <= set(dev["cpu_features"])
    assert info["engines"]["tflite"] and info["engines"]["tflite"] != "litert"
    base = device_info(_emulated("cortex-a72"))["device"]
    assert base["cpu"] == "Cortex-A72" and "fp16" not in base["cpu_features"]
