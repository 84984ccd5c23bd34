"""Latency measurement, budgets and `shufflenet bench` on real artifacts."""
from __future__ import annotations

import dataclasses
import json
import platform
import time

import pytest
from click.testing import CliRunner
from conftest_runtimes import BATCH, resolved_artifacts
from strict import missing

import runtimes
from runtimes import measure
from runtimes.machine import machine_fingerprint
from runtimes.targets import (
    Budgets,
    SizedFor,
    Target,
    WarmupPolicy,
    load_targets,
    normalize_arch,
)
from shufflenet.errors import ConfigError, RuntimeEngineError
from toolchain.bench import (
    BudgetCheck,
    bench_target,
    check_budgets,
    check_compatible,
    input_batch,
)
from toolchain.bench.budgets import judgement, overall_verdict
from toolchain.cli import main

FAST = {"warmup_min": 3, "warmup_window": 3, "warmup_max": 30, "iterations": 25}
HOST_ARCH = normalize_arch(platform.machine())
# this machine's CPU model, as the agent reads it: a cpu_class naming it makes this the device
HOST_CPU = machine_fingerprint()["cpu"]
# what the test artifacts are and where they run: budgets sized for them can be judged here
SIZED_HERE = (f"    arch: {HOST_ARCH}\n    cpu_class: [{json.dumps(HOST_CPU)}]\n"
              "    sized_for: {model: shufflenet_v2_x0_5, input_size: 64}\n")


def _targets_file(tmp_path, body: str):
    f = tmp_path / "targets.yaml"
    f.write_text("targets:\n" + body)
    return str(f)


def test_measure_latency_in_process():
    from runtimes.devices import InProcessDevice

    onnx = resolved_artifacts()[1]["onnx"]
    x = input_batch(onnx.metadata, BATCH)
    ticks = []
    with InProcessDevice().open("onnxruntime", onnx, threads=1) as runner:
        res = runner.latency(x, FAST, progress=lambda phase, n: ticks.append(phase))
    assert res.iterations == 25 and len(res.times_ms) == 25
    assert 0 < res.min_ms <= res.p50_ms <= res.p90_ms <= res.p99_ms <= res.max_ms
    assert res.mean_ms > 0 and res.std_ms >= 0
    assert res.throughput_ips == pytest.approx(BATCH * 1e3 / res.mean_ms)
    assert res.load_s > 0 and res.first_inference_ms > 0 and res.warmup["iterations"] >= 6
    assert res.peak_rss_mb > 50 and res.engine == "onnxruntime" and res.threads == 1
    assert {"warm-up", "measure"} <= set(ticks)
    assert res.output.shape == (BATCH, 10)
    assert set(res.to_dict()) >= {"p50_ms", "p99_ms", "fingerprint", "warmup"}


def test_time_budget_mode():
    onnx = resolved_artifacts()[1]["onnx"]
    x = input_batch(onnx.metadata, BATCH)
    with runtimes.create_runner("onnxruntime", onnx, threads=1) as r:
        start = time.perf_counter()
        res = r.latency(x, {**FAST, "time_budget_s": 0.3, "min_iterations": 5})
        assert time.perf_counter() - start >= 0.3
    assert res.iterations >= 5


def test_warm_up_waits_for_stability_and_is_capped():
    # latency that halves for a while, then settles: stable only after it settles
    delays = [0.008, 0.004, 0.002, 0.001] + [0.0005] * 400
    it = iter(delays)
    warm = measure.warm_up(lambda: time.sleep(next(it)), {"warmup_min": 2, "warmup_window": 3,
                                                          "warmup_tolerance": 0.5})
    assert warm["stable"] and warm["iterations"] >= 6 + 1
    # latency that keeps growing never counts as stable: the cap ends warm-up
    grow = iter([0.0002 * 1.5 ** i for i in range(40)])
    warm = measure.warm_up(lambda: time.sleep(next(grow)), {"warmup_min": 2, "warmup_window": 3,
                                                           "warmup_max": 12, "warmup_tolerance": 0.05})
    assert not warm["stable"] and warm["iterations"] == 12


def test_summarize_percentiles():
    s = measure.summarize([0.001 * i for i in range(1, 101)], batch=2)
    assert s["p50_ms"] == pytest.approx(50.5) and s["p90_ms"] == pytest.approx(90.1)
    assert s["min_ms"] == pytest.approx(1) and s["max_ms"] == pytest.approx(100)
    assert s["throughput_ips"] == pytest.approx(2 * 1e3 / 50.5)


def _judged_here(iterations: int, budgets) -> Target:
    """An ONNX Runtime target this machine may judge: its arch, its CPU, the test artifact's size."""
    return Target(name="t", engine="onnxruntime", batch=BATCH, iterations=iterations, threads=1,
                  budgets=budgets, arch=HOST_ARCH, cpu_class=(HOST_CPU,),
                  sized_for=SizedFor("shufflenet_v2_x0_5", 64))


def test_check_budgets_pass_and_fail():
    onnx = resolved_artifacts()[1]["onnx"]
    t = _judged_here(100, Budgets(p50_ms=10_000, p99_ms=0.0001, peak_rss_mb=100_000))
    res = bench_target(onnx, t)
    checks = check_budgets(res, t)
    assert [c.metric for c in checks] == ["p50_ms", "p99_ms", "peak_rss_mb"]
    assert [c.passed for c in checks] == [True, False, True]
    assert isinstance(checks[0], BudgetCheck) and checks[1].status == "FAIL"
    assert res.peak_rss_mb < 1000  # a fresh agent process, not this test process
    assert check_budgets(res, dataclasses.replace(t, budgets=Budgets())) == []
    # a Target built in Python without arch or sized_for (a targets file refuses that) used to
    # be judged, and PASS, anywhere: its budgets say nothing about this device or this model
    for bare in (dataclasses.replace(t, arch=None), dataclasses.replace(t, sized_for=SizedFor()),
                 dataclasses.replace(t, sized_for=SizedFor("shufflenet_v2_x0_5", None))):
        unjudged = check_budgets(res, bare)
        assert {c.status for c in unjudged} == {"NOT JUDGED"}, bare
        assert "the target does not say" in unjudged[0].reason
    # a local target that names no device class could be judged on any machine of its arch
    classless = check_budgets(res, dataclasses.replace(t, cpu_class=None))
    assert {c.status for c in classless} == {"NOT JUDGED"}
    assert "names no cpu_class" in classless[0].reason and json.dumps(HOST_CPU) in classless[0].reason
    # ... and one whose class is not this CPU is not judged either, with the CPU named
    elsewhere = check_budgets(res, dataclasses.replace(t, cpu_class=("Cortex-A76",)))
    assert {c.status for c in elsewhere} == {"NOT JUDGED"}
    assert f"measured on {HOST_CPU}" in elsewhere[0].reason


def test_compatibility_errors():
    ckpt, arts = resolved_artifacts()
    onnx = arts["onnx"]
    with pytest.raises(ConfigError, match=r"precision mismatch: .* is fp32, target 'q' expects int8"):
        check_compatible(onnx, Target(name="q", engine="onnxruntime", precision="int8", batch=BATCH))
    with pytest.raises(ConfigError, match=r"expects a 'onnx-int8' artifact"):
        check_compatible(onnx, Target(name="q", engine="onnxruntime", format="onnx-int8",
                                      precision="int8", batch=BATCH))
    with pytest.raises(ConfigError, match="runs mindir, which cannot run this 'onnx'"):
        check_compatible(onnx, Target(name="m", engine="mindir"))
    with pytest.raises(ConfigError, match="wants 224 px input, the artifact takes 64 px"):
        check_compatible(onnx, Target(name="s", engine="onnxruntime", input_size=224, batch=BATCH))
    assert check_compatible(ckpt, Target(name="r", engine="mindspore")).format == "checkpoint"


def test_engine_not_installed_is_a_clear_error(tmp_path):
    if "tflite" in runtimes.available_engines():
        pytest.skip("LiteRT is installed here")
    fake = tmp_path / "m.tflite"
    fake.write_bytes(b"TFL3")
    onnx_meta = resolved_artifacts()[1]["onnx"].metadata
    (tmp_path / "m.tflite.meta.json").write_text(json.dumps({**onnx_meta, "format": "tflite",
                                                             "layout": "NHWC"}))
    t = Target(name="phone", engine="tflite", format="tflite", batch=BATCH)
    with pytest.raises(RuntimeEngineError, match=r"engine 'tflite' is not installed here.*"
                                                 r"shufflenet-toolchain\[tflite\]"):
        bench_target(runtimes.resolve_artifact(fake), t)


def test_mindspore_reference_in_process():
    ckpt = resolved_artifacts()[0]
    t = Target(name="ref", engine="mindspore", batch=1, iterations=3,
               warmup=WarmupPolicy(min=1, max=3, window=1, tolerance=0.5))
    res = bench_target(ckpt, t)
    assert res.engine == "mindspore" and res.iterations == 3 and res.p50_ms > 0


def test_a_percentile_of_too_few_runs_is_not_judged():
    """A 'p99' of 15 runs (their largest but one) was judged PASS or FAIL like a real p99."""
    onnx = resolved_artifacts()[1]["onnx"]
    t = _judged_here(15, Budgets(p50_ms=10_000, p90_ms=10_000, p99_ms=10_000))
    res = bench_target(onnx, t)
    assert res.iterations == 15
    checks = check_budgets(res, t)
    assert [c.status for c in checks] == ["PASS", "PASS", "NOT JUDGED"]
    assert "p99 needs at least 100 measured runs, 15 were measured" in checks[2].reason
    assert checks[2].measured == res.p99_ms                  # still shown
    assert overall_verdict(checks) == "NOT JUDGED"
    tight = dataclasses.replace(t, budgets=Budgets(p50_ms=0.0001, p99_ms=0.0001))
    assert [c.status for c in check_budgets(res, tight)] == ["FAIL", "NOT JUDGED"]


def test_bench_cli_pass_json_and_plot(tmp_path):
    onnx = resolved_artifacts()[1]["onnx"]
    f = _targets_file(tmp_path, f"  roomy:\n    engine: onnxruntime\n    threads: 1\n    batch: {BATCH}\n"
                                "    iterations: 20\n    warmup: {min: 3, window: 3}\n"
                                + SIZED_HERE +
                                "    budgets: {p50_ms: 5000, p90_ms: 5000, p99_ms: 5000, peak_rss_mb: 8000}\n")
    plot = tmp_path / "lat.png"
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "roomy", "--plot", str(plot)])
    assert res.exit_code == 0, res.output
    assert "PASS" in res.stdout and "FAIL" not in res.stdout and "p99 ms" in res.stdout
    assert "machine:" in res.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "roomy", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["passed"] and report["results"][0]["iterations"] == 20
    assert report["results"][0]["fingerprint"]["logical_cores"] >= 1


def test_bench_cli_tight_budget_fails_nonzero(tmp_path):
    onnx = resolved_artifacts()[1]["onnx"]
    f = _targets_file(tmp_path, f"  tight:\n    engine: onnxruntime\n    batch: {BATCH}\n"
                                "    iterations: 10\n" + SIZED_HERE +
                                "    budgets: {p50_ms: 0.0001, peak_rss_mb: 100000}\n")
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "tight"])
    assert res.exit_code == 1
    assert "FAIL" in res.stdout and "PASS" in res.stdout
    assert "1 of 2 budget(s) failed: tight p50_ms" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "tight", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["passed"] is False


def test_an_artifact_wrong_on_the_device_is_not_timed(tmp_path):
    """No latency without correctness: the bundled test vectors run on the target's runner
    first; weights changed after export make them FAIL, and bench reports the artifact as
    wrong on that target (exit 1) instead of printing its latency."""
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    onnx_path = resolved_artifacts()[1]["onnx"].path
    bad = tmp_path / onnx_path.name
    shutil.copy(onnx_path, bad)
    model = onnx.load(str(bad))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(init).copy()
    w.flat[: w.size // 10] *= 1.5
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    onnx.save(model, str(bad))
    f = _targets_file(tmp_path, f"  roomy:\n    engine: onnxruntime\n    threads: 1\n    batch: {BATCH}\n"
                                "    iterations: 20\n    warmup: {min: 3, window: 3}\n"
                                + SIZED_HERE + "    budgets: {p50_ms: 5000}\n")
    res = CliRunner().invoke(main, ["bench", str(bad), "--targets", f, "-t", "roomy", "--json"])
    assert res.exit_code == 1, res.output
    report = json.loads(res.stdout)
    assert report["results"] == [] and report["wrong_on_device"][0]["target"] == "roomy"
    assert "test vectors FAIL" in res.output and "not timed" in res.output
    assert "Traceback" not in res.output
    good = CliRunner().invoke(main, ["bench", str(onnx_path), "--targets", f, "-t", "roomy", "--json"])
    assert good.exit_code == 0, good.output
    assert json.loads(good.stdout)["results"][0]["vectors"]["verdict"] == "PASS"


def test_bench_cli_bad_inputs(tmp_path):
    onnx = str(resolved_artifacts()[1]["onnx"])
    cases = [
        (["-t", "no-such-target"], "unknown target 'no-such-target'"),
        (["-t", "x86-edge-ort-int8-1t"], "expects a 'onnx-int8' artifact"),
        ([], "--target NAME"),
        (["-t", "x86-edge-ort-1t", "--all-targets"], "not both"),
        # accepted and ignored before: it only means something with --all-targets and a file
        (["-t", "x86-edge-ort-1t", "--with-builtin"], "--with-builtin adds the built-in"),
        (["--all-targets", "--with-builtin"], "--with-builtin adds the built-in"),
    ]
    for args, msg in cases:
        res = CliRunner().invoke(main, ["bench", onnx, *args])
        assert res.exit_code != 0 and msg in res.output, (args, res.output)
        assert "Traceback" not in res.output
    res = CliRunner().invoke(main, ["bench", str(tmp_path / "missing.onnx"), "--all-targets"])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_bench_all_targets_picks_compatible_installed(tmp_path):
    mindir = resolved_artifacts()[1]["mindir"]
    f = _targets_file(tmp_path, f"  mindir-fast:\n    engine: mindir\n    batch: {BATCH}\n"
                                "    iterations: 5\n    warmup: {min: 2, window: 2, tolerance: 0.5}\n"
                                "  mindir-cpu-1t:\n    engine: mindir\n    precision: int8\n")
    res = CliRunner().invoke(main, ["bench", str(mindir), "--targets", f, "--all-targets", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert [r["target"] for r in report["results"]] == ["mindir-fast"]
    # with a file, "all" means the file's targets: no line for each built-in (issue 13 item 11)
    assert "skipping target x86-edge-ort-1t" not in res.stderr
    assert "skipping target mindir-cpu-1t: precision mismatch" in res.stderr
    assert [s["target"] for s in report["skipped"]] == ["mindir-cpu-1t"]
    # --with-builtin asks for both
    res = CliRunner().invoke(main, ["bench", str(mindir), "--targets-file", f, "--all-targets",
                                    "--with-builtin", "--json"])
    report = json.loads(res.stdout)
    assert {"target": "x86-edge-ort-1t", "reason": "target 'x86-edge-ort-1t' runs onnxruntime, which "
            "cannot run this 'mindir' artifact (shufflenet_v2_x0_5.mindir); it runs onnx, onnx-raw, "
            "onnx-fp16, onnx-int8"} in report["skipped"]


def test_cpu_affinity_is_applied_in_the_agent():
    if not hasattr(__import__("os"), "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this OS")
    onnx = resolved_artifacts()[1]["onnx"]
    t = Target(name="pinned", engine="onnxruntime", threads=1, batch=BATCH, iterations=10,
               affinity=(0,))
    res = bench_target(onnx, t)
    assert res.fingerprint["usable_cores"] == 1
    with pytest.raises(RuntimeEngineError, match="agent on local: OSError"):
        bench_target(onnx, dataclasses.replace(t, affinity=(4096,)))


def test_bench_cli_artifact_without_metadata(tmp_path):
    import onnx

    proto = onnx.load(str(resolved_artifacts()[1]["onnx"]))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    res = CliRunner().invoke(main, ["bench", str(bare), "-t", "x86-edge-ort-1t"])
    assert res.exit_code == 1 and "carries no shufflenet metadata" in res.output
    assert "Traceback" not in res.output


# -- honest latency: judged only on the device and model size a budget is for ------
def test_result_records_where_it_was_measured():
    onnx = resolved_artifacts()[1]["onnx"]
    res = bench_target(onnx, Target(name="t", engine="onnxruntime", batch=BATCH, iterations=5,
                                    threads=1, warmup=WarmupPolicy(min=2, window=2, tolerance=0.5)))
    on = res.measured_on
    assert on["host_arch"] == on["device_arch"] == HOST_ARCH and on["emulated"] is False
    assert on["cpu"] == res.fingerprint["cpu"] and on["where"] == "local"
    assert res.artifact_info["model"] == "shufflenet_v2_x0_5" and res.artifact_info["image_size"] == 64
    assert {"measured_on", "artifact_info"} <= set(res.to_dict())


def test_arm_phone_target_on_x86_is_not_judged():
    if HOST_ARCH == "aarch64":
        pytest.skip("this host is arm64: the phone targets' arch matches here")
    arts = resolved_artifacts()[1]
    if "mnn" not in arts:
        missing("MNN not installed")
    phone = load_targets()["arm-phone-bigcore-mnn-1t"]
    # sized for this artifact and an impossible budget: only the arch stops the verdict
    t = dataclasses.replace(phone, batch=BATCH, iterations=5, budgets=Budgets(p50_ms=1e-6),
                            sized_for=SizedFor("shufflenet_v2_x0_5", 64),
                            warmup=WarmupPolicy(min=2, window=2, tolerance=0.5))
    res = bench_target(arts["mnn"], t)
    checks = check_budgets(res, t)
    assert [c.status for c in checks] == ["NOT JUDGED"] and checks[0].passed is None
    assert checks[0].measured == res.p50_ms > 0          # the number is still shown
    assert f"budgets are for aarch64, measured on {HOST_ARCH}" in checks[0].reason
    assert "ssh" in checks[0].reason and overall_verdict(checks) == "NOT JUDGED"
    # the same budget on a target declared for this arch and this CPU is judged (and fails)
    here = dataclasses.replace(t, arch=HOST_ARCH, cpu_class=(HOST_CPU,))
    assert [c.status for c in check_budgets(res, here)] == ["FAIL"]


def test_emulated_timings_are_never_judged():
    from types import SimpleNamespace

    t = Target(name="e", engine="onnxruntime", arch="aarch64", budgets=Budgets(p50_ms=10),
               sized_for=SizedFor("shufflenet_v2_x0_5", 64), where="emu:arm64",
               cpu_class=("Cortex-A72",))
    res = SimpleNamespace(p50_ms=1.0, measured_on={"device_arch": "aarch64", "emulated": True,
                                                   "cpu": "cortex-a72"},
                          artifact_info={"model": "shufflenet_v2_x0_5", "image_size": 64})
    verdict = judgement(res, t)
    assert not verdict.judged and "emulated" in verdict.why
    assert [c.status for c in check_budgets(res, t)] == ["NOT JUDGED"]
    real = SimpleNamespace(**{**vars(res), "measured_on": {"device_arch": "aarch64", "emulated": False,
                                                           "cpu": "Cortex-A72"}})
    assert [c.status for c in check_budgets(real, t)] == ["PASS"]


def test_budget_sized_for_another_model_is_not_judged_cli(tmp_path):
    onnx = resolved_artifacts()[1]["onnx"]
    body = (f"  edge-224:\n    engine: onnxruntime\n    threads: 1\n    batch: {BATCH}\n"
            f"    iterations: 5\n    warmup: {{min: 2, window: 2, tolerance: 0.5}}\n"
            f"    arch: {HOST_ARCH}\n    cpu_class: [{json.dumps(HOST_CPU)}]\n"
            "    sized_for: {model: shufflenet_v2_x1_0, input_size: 224}\n"
            "    budgets: {p50_ms: 0.000001}\n")
    f = _targets_file(tmp_path, body)
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "edge-224"])
    assert res.exit_code == 0, res.output        # NOT JUDGED is not a failure ...
    assert "NOT JUDGED" in res.stdout and "PASS" not in res.stdout   # ... nor a pass
    assert ("budgets are sized for shufflenet_v2_x1_0 at 224 px, the artifact is "
            "shufflenet_v2_x0_5 at 64 px") in res.stdout
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "edge-224", "--json"])
    report = json.loads(res.stdout)
    assert report["passed"] is None and report["not_judged"] == 1
    assert report["results"][0]["verdict"] == "NOT JUDGED"
    assert report["budgets"][0]["status"] == "NOT JUDGED" and report["budgets"][0]["passed"] is None
    # sized for this artifact, the same budget is judged and fails
    f = _targets_file(tmp_path, body.replace("shufflenet_v2_x1_0, input_size: 224",
                                             "shufflenet_v2_x0_5, input_size: 64"))
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", f, "-t", "edge-224"])
    assert res.exit_code == 1 and "FAIL" in res.stdout


def test_pipeline_names_the_targets_of_a_users_file_it_cannot_run(tmp_path, capsys):
    """With --targets-file and no -t the pipeline measures the file's targets; one it cannot
    run (format not exported, engine missing) was dropped without a word, so a report could
    pass with no latency row for it."""
    from toolchain.pipeline.bench_stage import choose_targets

    f = _targets_file(tmp_path, "  box:\n    engine: onnxruntime\n    format: onnx\n"
                                "  phone:\n    engine: mnn\n    format: mnn\n")
    onnx = resolved_artifacts()[1]["onnx"]
    chosen = choose_targets([], f, {"onnx": onnx})
    assert [t.name for t, _ in chosen] == ["box"]
    err = capsys.readouterr().err
    assert "skipping target phone" in err and "no mnn fp32 artifact was exported" in err
    # the built-in defaults stay best effort: no line for each default the run cannot use
    choose_targets([], None, {"onnx": onnx})
    assert "skipping" not in capsys.readouterr().err


def test_pipeline_target_whose_format_was_exported_at_another_precision(tmp_path):
    """format: onnx with precision: int8 was handed the fp32 .onnx (then 'precision mismatch'
    at measuring time); now it is refused up front, saying what the exported file is."""
    from toolchain.pipeline.bench_stage import choose_targets

    f = _targets_file(tmp_path, "  w:\n    engine: onnxruntime\n    format: onnx\n"
                                "    precision: int8\n")
    onnx = resolved_artifacts()[1]["onnx"]
    with pytest.raises(ConfigError, match=r"target 'w' runs a onnx int8 artifact, the exported "
                                          r"onnx is fp32; fix the target's format or precision"):
        choose_targets(["w"], f, {"onnx": onnx})


def test_bench_table_names_each_measuring_machine(capsys):
    """The footer described only the first result's machine: after a local row, an emulated
    Cortex-A76 row was printed under 'machine: AMD EPYC'."""
    from toolchain.bench.latency import LatencyResult, measured_on
    from toolchain.commands.bench import _print_tables

    def result(where, cpu, system):
        fp = {"cpu": cpu, "cpu_models": [cpu], "machine": "x", "logical_cores": 2,
              "usable_cores": 2, "system": system}
        return LatencyResult("onnxruntime", "1", "m.onnx", "fp32", 1, 1, 0.1, 1.0, {}, 10,
                             *[1.0] * 7, 100.0, 50.0, fp, where=where, target=where,
                             measured_on=measured_on(fp, where))

    _print_tables([result("local", "AMD EPYC", "Linux-x86_64"),
                   result("emu:arm64", "Cortex-A76", "Linux-aarch64")], [],
                  [("NOT JUDGED", ""), ("NOT JUDGED", "")])
    out = capsys.readouterr().out
    assert "machine local: AMD EPYC, 2 logical cores (2 usable), Linux-x86_64" in out
    assert "machine emu:arm64: Cortex-A76, 2 logical cores (2 usable), Linux-aarch64" in out
    _print_tables([result("local", "AMD EPYC", "Linux-x86_64")], [], [("NOT JUDGED", "")])
    assert "\nmachine: AMD EPYC" in capsys.readouterr().out


def test_the_measured_on_label_names_the_cpu_budgets_are_judged_against():
    from toolchain.bench.latency import measured_on, measured_on_label

    fp = {"machine": "aarch64", "cpu": "Cortex-A76", "emulated": "qemu-aarch64"}
    assert measured_on_label(measured_on(fp, "emu:arm64"), "emu:arm64") == \
        "emu:arm64 aarch64 Cortex-A76 (emulated)"
    on = measured_on({"machine": "x86_64", "cpu": "Intel(R) Core(TM) i5-8250U CPU"})
    assert measured_on_label(on, "local") == "local x86_64 Intel(R) Core(TM) i5-8250U CPU"
    assert measured_on_label(measured_on({"machine": "x86_64"}), "local") == "local x86_64"
