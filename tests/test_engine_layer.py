"""One engine layer: the artifact contract resolved once, target options that reach the
engine or are refused, load failures that say what broke."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest_runtimes import BATCH, built_artifacts, real_batch
from strict import missing

import runtimes
from shufflenet.artifact import Artifact, resolve_artifact
from shufflenet.errors import ExportError, RuntimeEngineError


def _art(fmt):
    arts = built_artifacts()[1]
    if fmt not in arts:
        missing(f"no {fmt} artifact: its engine/converter is not installed here")
    return arts[fmt]


# -- the contract -------------------------------------------------------------------
def test_contract_module_imports_only_the_standard_library():
    """11a's zipapp ships it to devices that have numpy and an engine, nothing else."""
    import shufflenet.artifact as contract

    tree = ast.parse(Path(contract.__file__).read_text())
    top = set()
    for node in tree.body:  # module-level imports only; onnx / MindSpore are lazy, inside functions
        if isinstance(node, ast.Import):
            top |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            top.add(node.module.split(".")[0])
    assert top - set(sys.stdlib_module_names) == set(), top


def test_artifact_resolved_once_with_its_files():
    ncnn = _art("ncnn")
    art = resolve_artifact(ncnn)
    assert isinstance(art, Artifact) and resolve_artifact(art) is art
    assert (art.format, art.precision, art.model, art.image_size) == ("ncnn", "fp32",
                                                                       "shufflenet_v2_x0_5", 64)
    names = [f.name for f in art.files]
    assert names == [ncnn.name, ncnn.name[: -len(".param")] + ".bin", ncnn.name + ".meta.json"]
    assert set(art.preprocessing) >= {"image_size", "mean", "std", "crop_pct", "layout"}
    xml = resolve_artifact(_art("openvino"))
    assert [f.suffix for f in xml.files] == [".xml", ".bin", ".json"]


def test_missing_weights_is_one_clear_error(tmp_path):
    ncnn = _art("ncnn")
    param = tmp_path / ncnn.name
    param.write_bytes(ncnn.read_bytes())
    (tmp_path / (ncnn.name + ".meta.json")).write_text((ncnn.parent / (ncnn.name + ".meta.json")).read_text())
    with pytest.raises(ExportError, match=r"needs its weights .*\.ncnn\.bin next to it"):
        resolve_artifact(param)


def test_runner_takes_the_resolved_value_without_rereading(tmp_path):
    """A runner given an Artifact uses its metadata: the sidecar is not read again."""
    mnn = _art("mnn")
    art = resolve_artifact(mnn)
    copy = tmp_path / mnn.name
    copy.write_bytes(mnn.read_bytes())          # no sidecar next to the copy
    moved = Artifact(copy, art.format, art.precision, art.metadata, (copy,))
    with runtimes.create_runner("mnn", moved, threads=1) as r:
        out = r.infer(real_batch(art.metadata, BATCH))
    assert out.shape == (BATCH, 10) and np.isfinite(out).all()
    with pytest.raises(ExportError, match="carries no shufflenet metadata"):
        runtimes.create_runner("mnn", copy)


# -- options reach the engine, or are refused ---------------------------------------------
@pytest.mark.parametrize("engine,fmt", [("onnxruntime", "onnx"), ("openvino", "onnx"),
                                        ("mnn", "mnn"), ("ncnn", "ncnn"), ("mindir", "mindir")])
def test_unknown_option_is_rejected(engine, fmt):
    with pytest.raises(RuntimeEngineError, match=rf"engine '{engine}' has no option\(s\) light_speed"):
        runtimes.create_runner(engine, _art(fmt), light_speed=True)


def test_bad_option_value_is_rejected():
    onnx = _art("onnx")
    with pytest.raises(RuntimeEngineError, match="option performance_hint: 'FAST' is not one of"):
        runtimes.create_runner("openvino", onnx, performance_hint="FAST")
    with pytest.raises(RuntimeEngineError, match="option providers must be list"):
        runtimes.create_runner("onnxruntime", onnx, providers="CPUExecutionProvider")
    with pytest.raises(RuntimeEngineError, match="provider.*CUDAExecutionProvider not available here"):
        runtimes.create_runner("onnxruntime", onnx, providers=["CUDAExecutionProvider"]).activate()


def test_onnxruntime_options_reach_the_session():
    onnx = _art("onnx")
    with runtimes.create_runner("onnxruntime", onnx, threads=1) as r:
        default = r.settings()
    with runtimes.create_runner("onnxruntime", onnx, threads=1, graph_optimization="disable",
                                inter_op_threads=2) as r:
        changed = r.settings()
    assert default["graph_optimization_level"] == "ORT_ENABLE_ALL"
    assert changed["graph_optimization_level"] == "ORT_DISABLE_ALL"
    assert (default["inter_op_threads"], changed["inter_op_threads"]) == (1, 2)
    assert changed["providers"] == ["CPUExecutionProvider"]


def test_openvino_options_reach_the_compiled_model():
    onnx = _art("onnx")
    with runtimes.create_runner("openvino", onnx, threads=1) as r:
        default = r.settings()
    with runtimes.create_runner("openvino", onnx, threads=1, performance_hint="THROUGHPUT") as r:
        changed = r.settings()
    assert default["performance_hint"] == "LATENCY" and changed["performance_hint"] == "THROUGHPUT"
    assert "CPU" in str(changed["device"])


def test_ncnn_options_reach_the_net_and_load_codes_are_checked(tmp_path):
    ncnn = _art("ncnn")
    with runtimes.create_runner("ncnn", ncnn, threads=1) as r:
        default = r.settings()
    with runtimes.create_runner("ncnn", ncnn, threads=1, light_mode=False, fp16=True) as r:
        changed = r.settings()
    assert default["light_mode"] is True and changed["light_mode"] is False
    assert default["fp16_storage"] is False and changed["fp16_storage"] is True
    # truncated weights: ncnn's load_model return code becomes one readable error
    for f in resolve_artifact(ncnn).files:
        data = f.read_bytes()
        (tmp_path / f.name).write_bytes(data[: len(data) // 3] if f.suffix == ".bin" else data)
    with pytest.raises(RuntimeEngineError, match=r"ncnn: cannot load weights .* \(load_model returned"):
        runtimes.create_runner("ncnn", tmp_path / ncnn.name).activate()


def test_targets_file_option_values_are_checked_when_loading(tmp_path):
    from runtimes.targets import load_targets
    from shufflenet.errors import ConfigError

    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  box:\n    engine: ncnn\n    options: {powersave: 3}\n")
    with pytest.raises(ConfigError, match=r"option powersave: 3 is not one of 0, 1, 2"):
        load_targets(f)
    f.write_text(json.dumps({"targets": {"box": {"engine": "ncnn", "options": {"powersave": 2}}}}))
    assert load_targets(f)["box"].options == {"powersave": 2}


def test_one_place_builds_an_artifact():
    """An Artifact was built by hand in four places (the agent, the export smoke check, the
    parity layer probe, the contract itself) and the copies found files differently. Now
    Artifact.from_metadata is the one builder: no other code calls Artifact(...)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    calls = []
    for folder in ("shufflenet", "runtimes", "exporters", "toolchain", "benchmarks"):
        for py in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(py.read_text(), str(py))):
                if isinstance(node, ast.Call):
                    f = node.func
                    name = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
                    if name == "Artifact" or (name == "cls" and py.name == "artifact.py"):
                        calls.append(f"{py.relative_to(root)}:{node.lineno}")
    assert len(calls) == 2 and all(c.startswith("shufflenet/artifact.py:") for c in calls), calls
    builder = ast.parse((root / "shufflenet" / "artifact.py").read_text())
    from_metadata = next(n for n in ast.walk(builder)
                         if isinstance(n, ast.FunctionDef) and n.name == "from_metadata")
    inside = {n.lineno for n in ast.walk(from_metadata) if isinstance(n, ast.Call)}
    assert {int(c.rsplit(":", 1)[1]) for c in calls} <= inside     # both inside the builder
