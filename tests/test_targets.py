"""Targets: built-ins, user files, errors that name the line and field, `shufflenet targets`."""
from __future__ import annotations

import json
import platform

import pytest
from click.testing import CliRunner

from runtimes import ENGINES
from runtimes.targets import (Budgets, Target, get_target, load_targets, normalize_arch,
                              parse_targets, parse_where)
from shufflenet.errors import ConfigError
from toolchain.cli import main


def test_builtin_targets_are_valid_and_honest():
    targets = load_targets()
    assert {"x86-edge-ort-1t", "x86-edge-ort-4t", "x86-edge-openvino-1t",
            "arm-phone-bigcore-mnn-1t", "arm-phone-bigcore-ncnn-4t",
            "arm-phone-bigcore-litert-1t"} <= set(targets)
    for t in targets.values():
        assert t.engine in ENGINES and t.description
        assert t.where == "local"  # built-ins never pretend to reach a device
        assert t.format is None or t.format in ENGINES[t.engine].formats
        assert t.source.startswith(str(load_targets.__globals__["BUILTIN_FILE"]))
        if t.has_budgets:  # every budget says what device and what model size it is for
            assert t.arch == ("aarch64" if t.name.startswith("arm-") else "x86_64"), t.name
            assert (t.sized_for.model, t.sized_for.input_size) == ("shufflenet_v2_x1_0", 224)
            assert t.cpu_class, t.name  # ... and which device class (built-ins all run local)
    # a reference point on whatever host runs it is measured and shown, never judged
    assert not targets["mindir-cpu-1t"].has_budgets
    ort4 = targets["x86-edge-ort-4t"]
    assert ort4.threads == 4 and ort4.budgets.p99_ms == 20 and ort4.policy()["iterations"] == 100
    with pytest.raises(Exception):  # frozen
        ort4.threads = 2


def test_user_file_adds_and_replaces(tmp_path):
    f = tmp_path / "targets.yaml"
    f.write_text("targets:\n"
                 "  x86-edge-ort-1t:\n    engine: onnxruntime\n    threads: 2\n"
                 "  box:\n    engine: openvino\n    batch: 4\n    affinity: [0, 1]\n"
                 "    warmup: {window: 4, tolerance: 0.1}\n    time_budget_s: 2.5\n"
                 "    where: ssh://me@box.local:2222\n"
                 "    ssh: {identity_file: ~/.ssh/id, strict_host_key_checking: false}\n")
    t = load_targets(f)
    assert t["x86-edge-ort-1t"].threads == 2 and t["x86-edge-ort-1t"].budgets == Budgets()
    box = t["box"]
    assert (box.batch, box.affinity, box.warmup.window, box.warmup.tolerance) == (4, (0, 1), 4, 0.1)
    assert box.is_remote and not box.ssh.strict_host_key_checking and box.ssh.python == "python3"
    assert box.policy()["time_budget_s"] == 2.5 and box.source.endswith(":5")
    assert "x86-edge-ort-4t" in t


@pytest.mark.parametrize("body,line,match", [
    ("  a:\n    engine: onnxruntime\n    thread: 2\n", 4, r"field 'thread': unknown field; did you mean 'threads'"),
    ("  a:\n    engine: tensorrt\n", 3, r"field 'engine': unknown engine 'tensorrt'"),
    ("  a:\n    threads: 2\n", 2, r"target 'a': missing required field 'engine'"),
    ("  a:\n    engine: mnn\n    threads: four\n", 4, r"field 'threads': must be a number"),
    ("  a:\n    engine: mnn\n    threads: 0\n", 4, r"field 'threads': must be positive"),
    ("  a:\n    engine: mnn\n    where: http://x\n", 4, r"field 'where': must be 'local' or 'ssh://"),
    ("  a:\n    engine: mnn\n    budgets: {p50_ms: 5, p95_ms: 9}\n", 4, r"field 'budgets.p95_ms': unknown"),
    ("  a:\n    engine: mnn\n    precision: fp64\n", 4, r"field 'precision': must be one of"),
    ("  a:\n    engine: mnn\n    format: onnx\n", 4, r"engine 'mnn' cannot run format 'onnx'"),
    ("  a:\n    engine: mnn\n    affinity: [a]\n", 4, r"field 'affinity': must be a list of CPU ids"),
    ("  a:\n    engine: mnn\n  a:\n    engine: ncnn\n", 4, r"target 'a': defined twice"),
    ("  a:\n    engine: openvino\n    options: {inference_precison: f32}\n", 4,
     r"field 'options.inference_precison': engine 'openvino' has no option"),
    ("  a:\n    engine: mnn\n    options: {precision: fp16}\n", 4,
     r"field 'options': engine 'mnn' option precision: 'fp16' is not one of 'high', 'normal', 'low'"),
    ("  a:\n    engine: ncnn\n    options: {light_mode: 1}\n", 4,
     r"field 'options': engine 'ncnn' option light_mode must be bool"),
    ("  a:\n    engine: mnn\n    budgets: {p50_ms: 5}\n", 4,
     r"field 'budgets': budgets need 'arch' .* and 'sized_for'"),
    ("  a:\n    engine: mnn\n    arch: sparc\n", 4, r"field 'arch': must be one of x86_64, aarch64"),
    ("  a:\n    engine: mnn\n    sized_for: {model: shufflenet_v2_x1_0, input_size: 0}\n", 4,
     r"field 'sized_for.input_size': must be positive"),
    ("  a:\n    engine: mnn\n    sized_for: {model: shufflenetv2_x1_0, input_size: 224}\n", 4,
     r"field 'sized_for.model': unknown model 'shufflenetv2_x1_0'; did you mean 'shufflenet_v2_x1_0'"),
    ("  a:\n    engine: mnn\n    where: emu:x86\n", 4, r"field 'where': the emulated device is 'emu:arm64'"),
    ("  a:\n    engine: mnn\n    warmup: {tolerance: -1}\n", 4,
     r"field 'warmup.tolerance': must be a fraction from 0 to below 1"),
    ("  a:\n    engine: mnn\n    warmup: {min: 50, max: 10}\n", 4,
     r"field 'warmup': min \(50\) is more than max \(10\)"),
    ("  a:\n    engine: [mnn\n", 4, r"not valid YAML"),
    ("  a:\n    engine: mnn\n    cpu_class: []\n", 4,
     r"field 'cpu_class': must be a CPU model pattern or a non-empty list"),
    ("  a:\n    engine: mnn\n    cpu_class: {atom: 1}\n", 4, r"field 'cpu_class': must be a CPU model"),
    ("  a:\n    engine: mnn\n    cpu_class: [Atom, 5]\n", 4,
     r"field 'cpu_class': every entry must be a non-empty string, got 5"),
    ("  a:\n    engine: mnn\n    cpu_class: ['re:']\n", 4, r"field 'cpu_class': every entry must be a non-empty"),
    ("  a:\n    engine: mnn\n    cpu_class:\n      - Atom\n      - 're:core i[57'\n", 6,
     r"field 'cpu_class': 're:core i\[57' is not a valid regular expression: unterminated"),
])
def test_bad_targets_file_names_line_and_field(tmp_path, body, line, match):
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n" + body)
    with pytest.raises(ConfigError, match=match) as err:
        load_targets(f)
    assert f"{f}:{line}:" in str(err.value)


def test_cpu_class_loads_as_a_tuple_and_old_files_still_load(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  one:\n    engine: mnn\n    cpu_class: Cortex-A76\n"
                 "  many:\n    engine: mnn\n    cpu_class: [Atom, 're:core i[357]-']\n"
                 "  old:\n    engine: onnxruntime\n    arch: x86_64\n"
                 "    sized_for: {model: shufflenet_v2_x1_0, input_size: 224}\n"
                 "    budgets: {p50_ms: 5}\n")
    t = load_targets(f)
    assert t["one"].cpu_class == ("Cortex-A76",)
    assert t["many"].cpu_class == ("Atom", "re:core i[357]-")
    assert t["old"].cpu_class is None and t["old"].has_budgets  # no cpu_class: loads, NOT JUDGED locally


def test_top_level_shape_errors():
    with pytest.raises(ConfigError, match=r"<string>:1: unknown top-level key 'target'"):
        parse_targets("target:\n  a: {engine: mnn}\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_targets("targets: [1, 2]\n")
    assert parse_targets("") == {}


def test_unknown_target_suggests_names():
    with pytest.raises(ConfigError, match=r"unknown target 'x86-edge-ort-2t'; did you mean .*x86-edge-ort-1t"):
        get_target("x86-edge-ort-2t", load_targets())


def test_parse_where():
    assert parse_where("local") == {"kind": "local"}
    assert parse_where("ssh://pi@10.0.0.2:2200") == {"kind": "ssh", "user": "pi", "host": "10.0.0.2",
                                                     "port": 2200}
    assert parse_where("ssh://box")["port"] == 22
    assert parse_where("emu:arm64") == parse_where("emu:aarch64") == {"kind": "emu", "arch": "aarch64"}
    for bad in ("ssh://", "ssh://a@b:99999", "ssh://a@b/path", "adb://x"):
        with pytest.raises(ValueError):
            parse_where(bad)


def test_targets_cli_table_and_json(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  mine:\n    engine: onnxruntime\n    description: my box\n")
    res = CliRunner().invoke(main, ["targets", "--targets", str(f)])
    assert res.exit_code == 0, res.output
    assert "x86-edge-ort-1t" in res.output and "mine" in res.output and "my box" in res.output
    res = CliRunner().invoke(main, ["targets", "--json"])
    rows = json.loads(res.output)
    row = next(r for r in rows if r["name"] == "x86-edge-ort-1t")
    assert row["installed"] is True and row["p50_ms"] == 15 and row["threads"] == 1
    phone = next(r for r in rows if r["name"] == "arm-phone-bigcore-mnn-1t")
    assert phone["arch"] == "aarch64" and phone["sized_for"] == "shufflenet_v2_x1_0 @ 224px"
    host = normalize_arch(platform.machine())
    assert phone["judged"] == ("here" if host == "aarch64" else "not here: needs aarch64")
    assert next(r for r in rows if r["name"] == "reference-mindspore-cpu")["judged"] == "-"
    assert "Atom" in row["cpu_class"] and row["cpu_class_short"].startswith("Atom")


def test_targets_judged_column_follows_the_cpu_class():
    from toolchain.commands.targets import judged_where

    edge = load_targets()["x86-edge-ort-1t"]
    assert judged_where(edge, "x86_64", ["AMD EPYC"]) == "not here: AMD EPYC is not in cpu_class"
    assert judged_where(edge, "x86_64", ["Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz"]) == "here"
    assert judged_where(edge, "aarch64", ["Cortex-A76"]) == "not here: needs x86_64"
    mine = Target(name="m", engine="onnxruntime", arch="x86_64", budgets=Budgets(p50_ms=5))
    assert judged_where(mine, "x86_64", ["AMD EPYC"]) == "not here: no cpu_class"
    remote = Target(name="r", engine="onnxruntime", arch="x86_64", budgets=Budgets(p50_ms=5),
                    where="ssh://me@box")
    assert judged_where(remote, "x86_64", ["AMD EPYC"]) == "on the device if it is x86_64"


def test_targets_cli_bad_file_is_one_clean_line(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  mine:\n    engine: onnxruntime\n    budgets: {p99: 5}\n")
    res = CliRunner().invoke(main, ["targets", "--targets", str(f)])
    assert res.exit_code == 1
    assert f"{f}:4: target 'mine' field 'budgets.p99': unknown field" in res.output
    assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["targets", "--targets", str(tmp_path / "missing.yaml")])
    assert res.exit_code == 1 and "targets file not found" in res.output


@pytest.mark.parametrize("field,value", [
    ("budgets: {p50_ms: .inf}", "inf"),      # a budget every measurement passes
    ("budgets: {p99_ms: .nan}", "nan"),      # a budget every measurement fails
    ("threads: .inf", "inf"), ("iterations: .nan", "nan"),   # were an OverflowError / ValueError
    ("sized_for: {model: shufflenet_v2_x1_0, input_size: .inf}", "inf"),
    ("time_budget_s: .inf", "inf"),
])
def test_non_finite_numbers_are_refused_with_the_line(tmp_path, field, value):
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  a:\n    engine: onnxruntime\n    arch: x86_64\n"
                 "    sized_for: {model: shufflenet_v2_x1_0, input_size: 224}\n"
                 f"    {field}\n")
    with pytest.raises(ConfigError, match=rf"{f}:6: target 'a' field .*must be a finite number, "
                                          rf"got {value}"):
        load_targets(f)


def test_targets_file_that_is_not_text_is_one_clean_line(tmp_path):
    f = tmp_path / "t.yaml"
    f.write_bytes(b"\xff\xfetargets:\n")
    res = CliRunner().invoke(main, ["targets", "--targets-file", str(f)])
    assert res.exit_code == 1, res.output
    assert f"{f}: not a UTF-8 text file" in res.output   # was a UnicodeDecodeError traceback
    assert isinstance(res.exception, SystemExit)


def test_target_is_a_plain_frozen_dataclass():
    t = Target(name="x", engine="onnxruntime")
    assert t.where == "local" and not t.is_remote and t.batch == 1 and t.precision == "fp32"


def test_model_names_targets_accept_are_the_model_zoo():
    from shufflenet.artifact import MODEL_NAMES
    from shufflenet.models import list_models

    assert sorted(MODEL_NAMES) == sorted(list_models())
