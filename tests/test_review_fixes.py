"""Regression tests for the review findings of issue 13 (each failed on the code before the fix)."""
from __future__ import annotations

import numpy as np
import pytest

from shufflenet.config import make_config
from shufflenet.errors import ConfigError


# -- 1: the reference runner selects the CPU -------------------------------------
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


# -- 2: unsupported options are refused whatever their value ----------------------
@pytest.mark.parametrize("option", [{"ema": True}, {"ema": 1}, {"cutmix": 1.0}, {"mixup": 1.0},
                                    {"mixup": "1"}, {"aug_repeats": 3}, {"num_cycles": 2},
                                    {"gradient_accumulation_steps": 2}, {"drop_path_rate": 0.1}])
def test_unsupported_option_is_refused_even_when_it_equals_one(option):
    with pytest.raises(ConfigError, match="is not supported by this trainer"):
        make_config("demo", option)


@pytest.mark.parametrize("option", [{"ema": False}, {"cutmix": 0}, {"mixup": "0.0"},
                                    {"aug_repeats": 0}, {"num_cycles": 1},
                                    {"gradient_accumulation_steps": 1}, {"drop_path_rate": None}])
def test_documented_off_values_are_accepted(option):
    make_config("demo", option)


# -- 4: --diff shows option changes whose names contain a timing word -------------
def test_diff_shows_a_changed_bench_seconds_but_not_timings():
    from toolchain.pipeline import diff_records

    a = {"options": {"bench_seconds": 2.0}, "created": "t0",
         "stages": {"train": {"seconds": 10.0, "metrics": {"train_seconds": 9.0}}}}
    b = {"options": {"bench_seconds": 0.5}, "created": "t1",
         "stages": {"train": {"seconds": 12.0, "metrics": {"train_seconds": 11.0}}}}
    assert diff_records(a, b) == [("options.bench_seconds", 2.0, 0.5)]


# -- 5: log_interval is honoured; clip_grad works with dynamic loss scaling -------
def test_log_interval_is_not_capped():
    from shufflenet.train.trainer import postfix_interval

    assert postfix_interval(make_config("demo", {"log_interval": 100})) == 100
    assert postfix_interval(make_config("demo", {"log_interval": 0})) == 1


def _weight_step(cfg_overrides):
    """Norm of the weight change after one SGD step (lr 1, no momentum/decay) of a tiny net."""
    import mindspore as ms
    from mindspore import nn

    from shufflenet.train.build import build_train_cell

    ms.set_seed(0)
    cfg = make_config("demo", {"opt": "sgd", "momentum": 0.0, "weight_decay": 0.0,
                               **cfg_overrides})
    net = nn.SequentialCell(nn.Flatten(), nn.Dense(12, 4))
    before = [p.asnumpy().copy() for p in net.trainable_params()]
    opt = nn.SGD(net.trainable_params(), learning_rate=1.0)
    cell = build_train_cell(net, cfg, opt, "O2")
    cell.set_train(True)
    x = ms.Tensor(np.random.default_rng(0).normal(0, 5, (8, 3, 2, 2)).astype(np.float32))
    y = ms.Tensor(np.arange(8, dtype=np.int32) % 4)
    # the first steps overflow fp16 at scale 2**16 and are skipped while the scale drops
    for _ in range(40):
        out = cell(x, y)
        assert isinstance(out, tuple) and len(out) == 3   # the dynamic loss-scale cell
        if not bool(out[1].asnumpy()):
            break
    else:
        pytest.fail("every step overflowed")
    after = [p.asnumpy() for p in net.trainable_params()]
    return float(np.sqrt(sum(((a.astype(np.float64) - b) ** 2).sum()
                             for a, b in zip(after, before))))


@pytest.mark.parametrize("mode", ["PYNATIVE_MODE", "GRAPH_MODE"])
def test_clip_grad_is_applied_with_dynamic_loss_scaling(mode):
    # graph mode is how training runs on Ascend/GPU: the step must compile there too
    import mindspore as ms

    previous = ms.get_context("mode")
    ms.set_context(mode=getattr(ms, mode))
    try:
        _clip_grad_with_dynamic_scaling()
    finally:
        ms.set_context(mode=previous)


def _clip_grad_with_dynamic_scaling():
    base = {"dynamic_loss_scale": True, "amp_on_cpu": True, "amp_level": "O2"}
    unclipped = _weight_step(base)
    clipped = _weight_step({**base, "clip_grad": True, "clip_value": 1e-3})
    assert unclipped > 1e-2                     # a real step happened
    assert clipped <= 1e-3 * 1.05               # lr 1 x global norm <= clip value


# -- 3: the validate stage's cache key holds the accuracy gate --------------------
def test_validate_cache_key_changes_with_the_gate(tmp_path):
    from toolchain.pipeline.record import stable_hash
    from toolchain.pipeline.stages import PipelineOptions, _stage_validate, _train_config

    def key(gate):
        opts = PipelineOptions(run_dir=str(tmp_path), min_top1_pct=gate)
        stage = _stage_validate(opts, _train_config(opts, tmp_path))
        # since issue 10's review the stage reads the checkpoint (its metadata may name the data)
        return stable_hash(stage.inputs({"checkpoint_sha256": "0" * 64, "checkpoint": str(ckpt)}))

    from shufflenet import create_model
    from shufflenet.checkpoint import save_checkpoint

    ckpt = save_checkpoint(create_model("shufflenet_v2_x0_5", num_classes=10), tmp_path / "b.ckpt",
                           {"model": "shufflenet_v2_x0_5", "num_classes": 10, "image_size": 32})

    assert key(None) != key(90.0) != key(99.0)


# -- 15: one unit per interface: fractions in run.json, percent only where shown --
def test_reports_show_percent_of_the_fractions_in_run_json(tmp_path):
    from toolchain.pipeline.record import RunRecord, StageRecord
    from toolchain.pipeline.run_report import build_sections, write_reports

    rec = RunRecord(created="t0")
    rec.stages["validate"] = StageRecord("validate", status="done",
                                         metrics={"top1": 0.9731, "top5": 1.0})
    rec.passed = True
    write_reports(tmp_path, rec.to_dict(), [{"epoch": 1, "loss": 1.0, "val_top1": 1.0}])
    md = (tmp_path / "report.md").read_text()
    assert "97.31" in md and "0.9731" not in md
    assert build_sections(rec.to_dict(), [])["val"]["top1"] == 0.9731


# -- 7: files the toolchain writes get the normal umask permissions ---------------
def test_atomic_write_gives_umask_permissions_not_0600(tmp_path):
    import os
    import stat

    from shufflenet.checkpoint import atomic_write as old_path_name
    from shufflenet.fileio import atomic_write
    from toolchain.pipeline.record import RunRecord
    from toolchain.pipeline.run_report import write_reports

    assert old_path_name is atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("x"))
        rec = RunRecord(created="t0")
        rec.passed = True
        rec.save(tmp_path)
        write_reports(tmp_path, rec.to_dict(), [{"epoch": 1, "loss": 1.0, "val_top1": 0.5}])
        os.chmod(tmp_path / "a.txt", 0o640)      # an existing file keeps its own mode
        atomic_write(tmp_path / "a.txt", lambda tmp: open(tmp, "w").write("y"))
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert {"report.html", "report.md", "run.json", "training.png"} <= set(modes)
    assert modes.pop("a.txt") == 0o640
    assert set(modes.values()) == {0o644}, modes


# -- 8: an output path under a file is one readable line ---------------------------
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


@pytest.mark.parametrize("args", [
    ["pipeline", "-o", "{under_file}"],
    ["train", "-c", "demo", "--ckpt_save_dir", "{under_file}"],
])
def test_run_folder_under_a_file_is_one_line(tmp_path, args):
    """pipeline -o / train --ckpt_save_dir under a file printed a NotADirectoryError traceback."""
    from click.testing import CliRunner

    from toolchain.cli import main

    (tmp_path / "afile").write_text("x")
    under = str(tmp_path / "afile" / "run")
    res = CliRunner().invoke(main, [a.format(under_file=under) for a in args])
    assert res.exit_code == 1, res.output
    assert "Not a directory" in res.output and "afile" in res.output
    assert "Traceback" not in res.output
    assert isinstance(res.exception, SystemExit)   # a clean exit, not an escaped exception


# -- structure: one checkpoint -> eval network rule, no silent 1000-class default ---
@pytest.fixture(scope="module")
def seven_class_ckpt_without_count(tmp_path_factory):
    """A MindCV-style checkpoint: model named, class count only in the classifier's shape."""
    from shufflenet import create_model
    from shufflenet.checkpoint import save_checkpoint

    net = create_model("shufflenet_v2_x0_5", num_classes=7)
    path = tmp_path_factory.mktemp("ck") / "seven.ckpt"
    save_checkpoint(net, path, {"model": "shufflenet_v2_x0_5", "image_size": 64})
    return path


def test_every_checkpoint_reader_takes_the_class_count_from_the_classifier(
        seven_class_ckpt_without_count):
    import runtimes
    from exporters.source import load_source
    from shufflenet.models import load_eval_network
    from toolchain.parity.layers import load_reference_network

    path = seven_class_ckpt_without_count
    assert load_eval_network(path).num_classes == 7
    assert load_source(path).num_classes == 7
    # these two defaulted to the model's 1000 classes and failed on the classifier's shape
    assert load_reference_network(path).num_classes == 7
    with runtimes.create_runner("mindspore", path) as runner:
        assert runner.metadata["num_classes"] == 7
        out = runner.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert out.shape == (1, 7)


def test_a_class_count_that_contradicts_the_checkpoint_is_refused(seven_class_ckpt_without_count):
    from shufflenet.errors import CheckpointError
    from shufflenet.models import load_eval_network

    with pytest.raises(CheckpointError, match="--num_classes 5 does not match .* classifier has 7"):
        load_eval_network(seven_class_ckpt_without_count, num_classes=5)


# -- structure: no import cycles inside exporters/ (lazy imports count too) ---------
def _package_imports(package: str) -> dict:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / package
    graph = {}
    for f in root.glob("*.py"):
        mod = f.stem
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + "."):
                deps.add(node.module.split(".")[1])
        graph[mod] = deps - {mod, "__init__"}
    return graph


def _cycles(graph: dict) -> list:
    """Every module that can reach itself, with one path back to it."""
    found = []
    for start in sorted(graph):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, ())):
                if nxt == start:
                    found.append(path + [start])
                    stack = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    return found


def test_exporters_has_no_import_cycles():
    # was builders -> edge -> builders and onnx_layout -> onnx_optimize -> onnx_layout
    assert _cycles(_package_imports("exporters")) == []


def test_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()})


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


def test_validate_table_shows_percent_and_json_keeps_fractions(tmp_path):
    import json

    from click.testing import CliRunner
    from conftest_export import make_checkpoint

    from toolchain.cli import main

    ckpt = str(make_checkpoint(tmp_path / "ten.ckpt"))
    args = ["validate", "--ckpt_path", ckpt, "--dataset", "demo", "--num_samples", "16",
            "--batch_size", "16", "--mode", "1"]
    as_json = CliRunner().invoke(main, args + ["--json"])
    assert as_json.exit_code == 0, as_json.output
    top1 = json.loads(as_json.stdout)["top1"]
    assert 0.0 <= top1 <= 1.0
    table = CliRunner().invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "top-1 %" in table.stdout and f"{100 * top1:.2f}".rstrip("0").rstrip(".") in table.stdout
