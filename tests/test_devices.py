"""Devices: the agent zipapp (the runners themselves) here, and on the emulated ARM64 device.

The host tests run the zipapp in a fresh local Python. The emulated tests
need ``shufflenet device setup arm64`` (CI's .ci/run builds it); without it
they skip here and fail under SHUFFLENET_STRICT.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from conftest_runtimes import built_artifacts, real_batch
from strict import missing

import runtimes
from runtimes.bundle import BUNDLED, agent_zipapp
from runtimes.devices import AgentSession, SubprocessDevice, device_for
from shufflenet.artifact import Artifact, resolve_artifact
from shufflenet.errors import RuntimeEngineError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (format, engine, options): every engine an edge device runs, at its precisions
EDGE_CASES = [("onnx", "onnxruntime", {}), ("mnn", "mnn", {}), ("mnn", "mnn", {"precision": "low"}),
              ("ncnn", "ncnn", {}), ("ncnn", "ncnn", {"fp16": True}),
              ("mindir", "mindir", {})]   # a local MindIR bench target goes through the agent too


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
    assert not any(n.startswith(("toolchain/", "exporters/", "shufflenet/models")) for n in names)
    session = AgentSession(SubprocessDevice(), SubprocessDevice().stage([]))
    try:
        info = session.request({"op": "describe", "modules": True})
        arts = built_artifacts()[1]
        session.request({"op": "open", "engine": "onnxruntime", "artifact": str(arts["onnx"]),
                         "metadata": resolve_artifact(arts["onnx"]).metadata})
        loaded = session.request({"op": "describe", "modules": True})["modules"]
    finally:
        session.close()
    assert info["device"]["arch"] and info["engines"]["onnxruntime"]
    for forbidden in ("mindspore", "click", "yaml", "onnx", "toolchain", "exporters", "tqdm"):
        assert forbidden not in loaded, forbidden
    assert "onnxruntime" in loaded and "numpy" in loaded


@pytest.mark.parametrize("case", range(7))
def test_zipapp_agent_gives_the_local_runners_logits_bit_for_bit(case):
    cases = _cases()
    if case >= len(cases):
        # CI installs every engine of EDGE_CASES and OpenVINO: a missing case is a broken install
        missing(f"engine case {case} not available: only {len(cases)} of the zipapp cases have "
                "their engine/artifact here (pip install -e \".[test]\" installs them all)")
    path, engine, options = cases[case]
    art = resolve_artifact(path)
    x = real_batch(art.metadata, 2)
    with runtimes.create_runner(engine, art, threads=1, **options) as local:
        want = local.infer(x)
    with SubprocessDevice().open(engine, art, 1, options) as remote:
        got = remote.infer(x)
        info = remote.info()
    assert np.array_equal(got, want), np.abs(got - want).max()
    assert info.engine == engine and info.engine_version == local.info().engine_version
    assert remote.device["arch"] and remote.device["emulated"] is None


def test_a_device_keeping_its_agents_serves_one_artifact_after_another_on_one_agent():
    """Parity on a device opens one artifact after another: the second runner gets the first's
    agent (its artifact closed), a runner opened while the agent is busy gets another, the
    logits are the fresh-process ones, a dead agent is replaced, and leaving the block stops
    every agent."""
    arts = [resolve_artifact(p) for f, p in built_artifacts()[1].items() if f in ("onnx", "mnn")]
    engines = {"onnx": "onnxruntime", "mnn": "mnn"}
    x = real_batch(arts[0].metadata, 2)
    dev = SubprocessDevice()
    fresh = {}
    for art in arts:
        with dev.open(engines[art.format], art, 1) as r:
            fresh[art.format] = r.infer(x)
    with dev.keep_agents() as pool:
        with pytest.raises(RuntimeError, match="already keeps"):
            dev.keep_agents().__enter__()
        sessions = []
        for art in arts + arts:
            with dev.open(engines[art.format], art, 1) as r:
                assert np.array_equal(r.infer(x), fresh[art.format])
                sessions.append(r._session)
        assert pool.started == 1 and len({id(s) for s in sessions}) == 1
        if len(os.sched_getaffinity(0)) > 1:   # a pinned runner's CPUs do not stay with its agent
            with dev.open("onnxruntime", arts[0], 1, affinity=[0]) as r:
                pid = r._session.proc.pid
                assert os.sched_getaffinity(pid) == {0}
            with dev.open("onnxruntime", arts[0], 1) as r:
                assert r._session.proc.pid == pid
                assert os.sched_getaffinity(pid) == os.sched_getaffinity(0)
        with dev.open("onnxruntime", arts[0], 1) as a, dev.open("onnxruntime", arts[0], 1) as b:
            assert a._session is not b._session and pool.started == 2
            assert np.array_equal(a.infer(x), b.infer(x))
        idle = [s for s, _ in pool._idle]
        assert len(idle) == 2
        idle[0].proc.kill()
        idle[0].proc.wait()
        r = dev.open("onnxruntime", arts[0], 1).activate()      # the live one serves
        r2 = dev.open("onnxruntime", arts[0], 1).activate()     # the dead one is replaced
        assert pool.started == 3 and r2._session is not idle[0]
        assert np.array_equal(r2.infer(x), fresh["onnx"])
        sessions += [r._session, r2._session]
        r.deactivate()
        r2.deactivate()
    assert dev.agents is None and not pool._idle
    assert all(s.proc.poll() is not None for s in sessions + idle)


def test_a_subprocess_device_runs_this_interpreter_and_its_environment():
    """The agent must start in the launching interpreter's environment (a symlinked venv
    python outside its folder loses the venv); the device says which Python serves it."""
    here = SubprocessDevice().describe()["interpreter"]
    assert here == {"executable": sys.executable, "prefix": sys.prefix}


def test_target_options_reach_the_engine_on_the_device_or_are_rejected():
    onnx = resolve_artifact(built_artifacts()[1]["onnx"])
    dev = SubprocessDevice()
    with pytest.raises(RuntimeEngineError, match="has no option"):   # before anything starts
        dev.open("onnxruntime", onnx, options={"light_mode": True})
    # a value only the engine itself can refuse: the refusal comes from the device's ORT
    runner = dev.open("onnxruntime", onnx, options={"providers": ["NoSuchExecutionProvider"]})
    with pytest.raises(RuntimeEngineError, match=r"agent on local: .*NoSuchExecutionProvider"):
        runner.activate()
    x = real_batch(onnx.metadata, 1)
    with dev.open("onnxruntime", onnx, options={"graph_optimization": "disable"}) as r:
        got = r.infer(x)
    with runtimes.create_runner("onnxruntime", onnx, graph_optimization="disable") as local:
        assert np.array_equal(local.infer(x), got)


def test_the_agent_has_one_protocol_and_errors_are_one_line(tmp_path):
    """The one-shot job path is gone: the serving session is the only way in; a failed request
    is one line and the session goes on (open, infer, latency, close on one process)."""
    pyz = agent_zipapp()
    proc = subprocess.run([sys.executable, str(pyz), str(tmp_path / "job.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--serve" in proc.stderr and "Traceback" not in proc.stderr
    art = resolve_artifact(built_artifacts()[1]["onnx"])
    session = AgentSession(SubprocessDevice(), SubprocessDevice().stage([]))
    try:
        with pytest.raises(RuntimeEngineError, match=r"agent on local: .*nope\.onnx"):
            session.request({"op": "open", "engine": "onnxruntime",
                             "artifact": str(tmp_path / "nope.onnx")})
        with pytest.raises(RuntimeEngineError, match="send an 'open' request"):
            session.request({"op": "latency", "x": {}})
        session.request({"op": "open", "engine": "onnxruntime", "artifact": str(art.path),
                         "metadata": art.metadata, "threads": 1})
        from runtimes.agent import encode_array

        x = encode_array(real_batch(art.metadata, 2))
        ticks = []
        reply = session.request({"op": "latency", "x": x, "progress": True,
                                 "policy": {"iterations": 5, "warmup_min": 1, "warmup_max": 2}},
                                progress=lambda phase, n: ticks.append((phase, n)))
        assert reply["result"]["iterations"] == 5 and reply["result"]["batch"] == 2
        assert ("measure", 5) in ticks
        session.request({"op": "close"})
    finally:
        session.close()
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


def test_user_mode_emulation_is_seen_from_inside():
    """A Python under qemu-user that nobody told it was emulated (a Docker --platform
    linux/arm64 container through binfmt, or `where: local` run inside one) reported
    emulated None: its Cortex-A76 timings were judged like a real phone's."""
    from runtimes.machine import machine_fingerprint, user_mode_emulator

    assert user_mode_emulator("x86_64", "aarch64") == "user-mode: aarch64 on a x86_64 kernel"
    assert user_mode_emulator("aarch64", "x86_64") is not None
    for kernel, machine in (("x86_64", "x86_64"), ("aarch64", "aarch64"), ("aarch64", "armv7l"),
                            ("x86_64", "i686"), (None, "aarch64")):
        assert user_mode_emulator(kernel, machine) is None, (kernel, machine)
    assert machine_fingerprint()["emulated"] is None      # this machine runs natively
    dev = _emulated("cortex-a76")
    env = {**dev.env(), "PYTHONPATH": f"{dev.dev.site}{os.pathsep}{REPO}"}
    env.pop("SHUFFLENET_EMULATED")
    out = subprocess.run(dev.python_argv() + ["-c", "from runtimes.machine import machine_fingerprint "
                                              "as f; d = f(); print(d['machine'], d['emulated'])"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "aarch64 user-mode: aarch64 on a x86_64 kernel"


@pytest.mark.slow
def test_emulated_device_is_aarch64_and_says_so():
    info = _emulated("cortex-a76").describe()
    dev = info["device"]
    assert dev["arch"] == "aarch64" and dev["cpu"] == "Cortex-A76"
    assert dev["emulated"] == "qemu:cortex-a76" and {"fp16", "dotprod"} <= set(dev["cpu_features"])
    assert info["engines"]["tflite"] and info["engines"]["tflite"] != "litert"
    base = _emulated("cortex-a72").describe()["device"]
    assert base["cpu"] == "Cortex-A72" and "fp16" not in base["cpu_features"]


@pytest.mark.slow
def test_emulated_bench_job_reports_the_device():
    import dataclasses

    from runtimes.targets import Budgets, SizedFor, Target, WarmupPolicy
    from toolchain.bench import bench_target, check_budgets

    _emulated("cortex-a72")
    onnx = resolve_artifact(built_artifacts()[1]["onnx"])
    t = Target(name="emu-ort", engine="onnxruntime", where="emu:arm64", cpu="cortex-a72", batch=2,
               iterations=3, warmup=WarmupPolicy(min=1, max=2, window=1))
    res = bench_target(onnx, t)
    assert res.fingerprint["arch"] == "aarch64" and res.fingerprint["cpu"] == "Cortex-A72"
    assert res.fingerprint["emulated"] == "qemu:cortex-a72" and res.where.startswith("emu:arm64")
    # a budget that real hardware would meet easily is still never judged on emulated timings
    judged = dataclasses.replace(t, arch="aarch64", budgets=Budgets(p50_ms=1e9),
                                 sized_for=SizedFor("shufflenet_v2_x0_5", 64))
    assert [c.status for c in check_budgets(res, judged)] == ["NOT JUDGED"]


# -- device-side parity on the emulated device ---------------------------------------
@pytest.fixture(scope="module")
def arts32(tmp_path_factory):
    """A well-conditioned x0_5 at 32 px and its edge exports (real photos, real margins)."""
    from conftest_parity import export_artifacts, make_checkpoint

    out = tmp_path_factory.mktemp("arts32")
    ckpt = make_checkpoint(out / "x05.ckpt", size=32)
    formats = "onnx,onnx-int8,mnn,ncnn" if "ncnn" in runtimes.available_engines() else \
        "onnx,onnx-int8,mnn"
    # int8-all (a budget its first trial meets): the same file on every run, where the timed
    # search's fp32 layers followed the machine's load and 4 samples judge it
    return ckpt, export_artifacts(ckpt, out, formats, int8_max_drop_pp=5.0)


@pytest.mark.slow
def test_parity_on_the_emulated_arm64_device_with_two_cpu_models(arts32):
    """Every edge artifact vs the checkpoint on arm64 kernels: ARMv8.0 (no fp16) and ARMv8.2."""
    from toolchain.parity import run_parity

    ckpt, arts = arts32
    found = {}
    for cpu in ("cortex-a72", "cortex-a76"):
        dev = _emulated(cpu)
        with dev.keep_agents() as pool:    # the low-precision runs reuse the fp32 run's agents
            fp32 = run_parity(ckpt, [arts[f] for f in ("onnx", "onnx-int8", "mnn", "ncnn")
                                     if f in arts],
                              engines=["onnxruntime", "mnn", "ncnn"], device=dev, samples=4,
                              batch_size=4, progress=False, localize=False)
            low = run_parity(ckpt, [arts[f] for f in ("mnn", "ncnn") if f in arts],
                             engines=["mnn", "ncnn"], device=dev, samples=4, batch_size=4,
                             progress=False, localize=False, profile="fp16",
                             engine_options={"mnn": {"precision": "low"}, "ncnn": {"fp16": True}})
        assert pool.started == len(fp32.pairs) >= len(low.pairs) > 0
        for report, tag in ((fp32, ""), (low, "-low")):
            for p in report.pairs:
                assert p.error is None, p.error
                assert p.device["arch"] == "aarch64" and p.device["emulated"] == f"qemu:{cpu}"
                found[(p.format + tag, cpu)] = p
        for p in fp32.pairs:            # fp32 and int8 hold their own profile on arm64 kernels
            ok = ("PASS", "INCONCLUSIVE") if p.precision == "int8" else ("PASS",)  # 4 samples
            assert p.status in ok, (cpu, p.name, p.summary())
    rel = {k: p.metrics["max_rel_error"] for k, p in found.items()}
    # ARMv8.0 has no fp16 arithmetic: MNN "low" is fp32 there; ARMv8.2 really runs fp16
    assert rel[("mnn-low", "cortex-a72")] < 1e-4 < rel[("mnn-low", "cortex-a76")]
    if ("ncnn-low", "cortex-a72") in rel:
        assert rel[("ncnn-low", "cortex-a76")] > 10 * rel[("ncnn-low", "cortex-a72")]
    print("\n".join(f"{k[0]:10s} {k[1]:11s} max_rel {v:.3g} top1 "
                    f"{found[k].metrics['top1_agreement']:.3f} {found[k].status}"
                    for k, v in sorted(rel.items())))


def test_pipeline_plans_arm_parity_only_when_the_device_is_set_up(tmp_path, monkeypatch):
    from toolchain.pipeline.device_parity import SETUP_HINT, plan_device_checks

    arts = _fake_artifacts(tmp_path, {"mnn": "m.mnn", "ncnn": "m.ncnn.param", "onnx": "m.onnx"})
    monkeypatch.setenv("SHUFFLENET_HOME", str(tmp_path / "empty"))
    assert plan_device_checks(None, None, arts) == ([], [SETUP_HINT])
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  pi:\n    engine: ncnn\n    where: emu:arm64\n    cpu: cortex-a76\n"
                 "    options: {fp16: true}\n  here:\n    engine: onnxruntime\n")
    checks, notes = plan_device_checks(["pi", "here"], str(f), arts)
    assert [(c.target.name, c.target.cpu, c.artifact) for c in checks] == \
        [("pi", "cortex-a76", arts["ncnn"])] and notes == []


def _fake_artifacts(tmp_path, names: dict, precisions: dict | None = None) -> dict:
    """``{format: Artifact}`` of empty files whose metadata says format and precision."""
    out = {}
    for fmt, name in names.items():
        (tmp_path / name).touch()
        if name.endswith(".param"):
            (tmp_path / name.replace(".param", ".bin")).touch()
        prec = (precisions or {}).get(fmt, "int8" if "int8" in fmt else "fp32")
        out[fmt] = Artifact.from_metadata(tmp_path / name, {"format": fmt, "precision": prec})
    return out


def test_device_parity_checks_the_artifact_the_bench_stage_measures(tmp_path):
    """An int8 target's device parity ran the fp32 file (the first the engine could load)
    while its latency was measured on the int8 one; with no fp16 file it still ran fp32.
    Both halves now choose with runtimes.plan.plan, from each file's own metadata."""
    from runtimes.plan import plan
    from toolchain.pipeline.bench_stage import choose_targets
    from toolchain.pipeline.device_parity import plan_device_checks

    arts = _fake_artifacts(tmp_path, {"onnx": "m.onnx", "onnx-int8": "m.int8.onnx"})
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  q:\n    engine: onnxruntime\n    precision: int8\n"
                 "    where: emu:arm64\n  h:\n    engine: onnxruntime\n    precision: fp16\n"
                 "    where: emu:arm64\n  w:\n    engine: onnxruntime\n    format: onnx\n"
                 "    precision: int8\n    where: emu:arm64\n")
    checks, notes = plan_device_checks(["q", "h", "w"], str(f), arts)
    assert [(c.target.name, c.artifact) for c in checks] == [("q", arts["onnx-int8"])]
    assert notes == ["device parity for target h: no onnxruntime fp16 artifact was exported "
                     "(--formats)",
                     "device parity for target w: target 'w' runs a onnx int8 artifact, the "
                     "exported onnx is fp32; fix the target's format or precision"]
    from runtimes.targets import load_targets

    table = load_targets(f)
    assert choose_targets(["q"], str(f), arts) == [(table["q"], arts["onnx-int8"])]
    # the precision is the file's own (its metadata), not what its format is usually called:
    # an "onnx" file whose metadata says int8 is an int8 artifact for both halves
    odd = _fake_artifacts(tmp_path, {"onnx": "m.onnx"}, {"onnx": "int8"})
    pairs, _ = plan([table["q"]], list(odd.values()), measuring=False, exported=True)
    assert pairs == [(table["q"], odd["onnx"])]


def test_default_arm_parity_emulates_a_cpu_of_the_targets_class():
    """The default ARM check ran the A76-class targets on the emulator's default Cortex-A72
    (ARMv8.0, no fp16 arithmetic): other kernels than the device class they name."""
    from runtimes.targets import load_targets
    from toolchain.pipeline.device_parity import _on_emulator

    table = load_targets()
    phone = _on_emulator(table["arm-phone-bigcore-ncnn-1t"])
    assert (phone.where, phone.cpu) == ("emu:arm64", "cortex-a76")
    classless = _on_emulator(dataclasses.replace(table["arm-phone-bigcore-ncnn-1t"], cpu_class=None))
    assert classless.cpu is None     # the device's own default


def test_device_status_of_a_target_says_whether_its_budgets_are_judged_there(tmp_path):
    """`device status TARGET` showed the device but not whether the target's budgets would be
    judged on it, nor every core model cpu_class is matched against."""
    import platform

    from click.testing import CliRunner

    from runtimes.machine import machine_fingerprint
    from runtimes.targets import normalize_arch
    from toolchain.cli import main

    cpu = machine_fingerprint()["cpu"]
    sized = (f"    arch: {normalize_arch(platform.machine())}\n"
             "    sized_for: {model: shufflenet_v2_x0_5, input_size: 32}\n"
             "    budgets: {p50_ms: 5}\n")
    f = tmp_path / "t.yaml"
    f.write_text(f"targets:\n  mine:\n    engine: onnxruntime\n    cpu_class: [{json.dumps(cpu)}]\n"
                 + sized + "  theirs:\n    engine: onnxruntime\n    cpu_class: [Cortex-X925]\n"
                 + sized)
    r = CliRunner().invoke(main, ["device", "status", "mine", "--targets-file", str(f), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["judged"] is True and cpu in out["cpu_models"]
    r = CliRunner().invoke(main, ["device", "status", "theirs", "--targets-file", str(f)])
    assert r.exit_code == 0, r.output
    assert f"judged        no: measured on {cpu}, which is not in the target's cpu_class" in r.output
    assert "cpu_models" in r.output


def test_device_cli_lists_and_refuses_bad_input(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from toolchain.cli import main

    monkeypatch.setenv("SHUFFLENET_HOME", str(tmp_path))
    r = CliRunner().invoke(main, ["device", "list", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["device"]: row for row in json.loads(r.output)}
    assert rows["emu:arm64"]["ready"] is False and "shufflenet device setup arm64" in \
        rows["emu:arm64"]["detail"]
    r = CliRunner().invoke(main, ["device", "status", "emu:arm64"])
    assert r.exit_code == 1 and "not set up" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["device", "status", "ftp://x"])
    assert r.exit_code == 1 and "unknown device" in r.output
    r = CliRunner().invoke(main, ["device", "setup", "arm64", "--cpu", "pentium"])
    assert r.exit_code == 2 and "pentium" in r.output


def test_unreachable_package_sources_are_one_clear_line(tmp_path, monkeypatch):
    from runtimes import emulated

    monkeypatch.setenv("SHUFFLENET_HOME", str(tmp_path))
    monkeypatch.setattr(emulated, "_sources_list", lambda release="bookworm": (
        "deb [arch=arm64 trusted=yes] http://127.0.0.1:9/debian bookworm main\n"))
    with pytest.raises(emulated.DeviceError) as err:
        emulated.build_device("arm64")
    msg = str(err.value)
    assert msg.startswith("cannot ") and "\n" not in msg
    assert "reachable" in msg or "not found" in msg
    assert not emulated.device_dir("arm64").exists()      # nothing half-built is left as a device


def test_device_runner_over_ssh_equals_local_and_cleans_up(tmp_path):
    """The same zipapp session over ssh (a real sshd on 127.0.0.1): logits bit for bit."""
    from conftest_ssh import start_sshd, stop_sshd

    from runtimes.devices import SshDevice
    from runtimes.targets import SshOptions

    server = start_sshd(tmp_path / "sshd")
    try:
        ncnn_or_onnx = built_artifacts()[1].get("ncnn") or built_artifacts()[1]["onnx"]
        engine = "ncnn" if str(ncnn_or_onnx).endswith(".param") else "onnxruntime"
        dev = SshDevice(server.where, SshOptions(identity_file=str(server.client_key),
                                                 known_hosts=str(server.known_hosts),
                                                 python=sys.executable))
        art = resolve_artifact(ncnn_or_onnx)
        x = real_batch(art.metadata, 2)
        with runtimes.create_runner(engine, art) as local:
            want = local.infer(x)
        runner = dev.open(engine, art)
        with runner:
            got = runner.infer(x)
            remote_dir = runner._staged.remote_dir
        assert np.array_equal(got, want) and runner.device["where"] == server.where
        assert remote_dir.startswith("/tmp/shufflenet-bench.")
        import os
        assert not os.path.exists(remote_dir)        # the host's folder is gone afterwards
    finally:
        stop_sshd(server)


def test_parity_cli_target_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import main

    ckpt, arts = built_artifacts()
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  emu-ncnn:\n    engine: ncnn\n    where: emu:arm64\n")
    for args, want in ((["--target", "nope"], "unknown target 'nope'"),
                       (["--target", "emu-ncnn", "--engine", "mnn"], "runs ncnn; drop --engine")):
        r = CliRunner().invoke(main, ["parity", str(ckpt), str(arts["onnx"]), "--targets-file",
                                      str(f), *args])
        assert r.exit_code == 1 and want in r.output and "Traceback" not in r.output, r.output


@pytest.mark.slow
def test_parity_cli_on_an_emulated_target_and_pipeline_default_arm_check(arts32, tmp_path):
    from click.testing import CliRunner

    from toolchain.cli import main

    _emulated("cortex-a76")
    ckpt, arts = arts32
    f = tmp_path / "t.yaml"
    f.write_text("targets:\n  a76-mnn-low:\n    engine: mnn\n    where: emu:arm64\n"
                 "    cpu: cortex-a76\n    options: {precision: low}\n")
    r = CliRunner().invoke(main, ["parity", str(ckpt), str(arts["mnn"]), "--target", "a76-mnn-low",
                                  "--targets-file", str(f), "--samples", "4", "--profile", "fp16",
                                  "--json"])
    assert r.exit_code == 0, r.output
    pair = json.loads(r.stdout)["pairs"][0]
    assert pair["device"]["cpu"] == "Cortex-A76" and pair["device"]["emulated"] == "qemu:cortex-a76"
    assert pair["engine"] == "mnn" and pair["engine_version"] and pair["status"] == "PASS"
    # the default pipeline checks the built-in ARM targets' engines on the emulated device
    run_dir = tmp_path / "run"
    # the test checkpoint names no training data: say which data judges it (pre-flight asks)
    r = CliRunner().invoke(main, ["pipeline", "-o", str(run_dir), "--ckpt-path", str(ckpt),
                                  "--dataset", "demo", "--formats", "mnn", "--samples", "8",
                                  "--bench-seconds", "0.2"])
    rec = json.loads((run_dir / "run.json").read_text())
    # an untrained checkpoint: the chance gate may fail it (exit 1), and nothing else may
    assert all(g.startswith("model beats chance") for g in rec["failed_gates"]), r.output
    assert r.exit_code == (1 if rec["failed_gates"] else 0), r.output
    pairs = rec["stages"]["parity"]["metrics"]["pairs"]
    on_arm = [p for p in pairs if p["device"].get("arch") == "aarch64"]
    assert on_arm and all(p["device"]["emulated"] and p["verdict"] == "PASS" for p in on_arm)
    assert any(p["device"].get("where") == "local" for p in pairs)
    assert "aarch64 Cortex-A" in (run_dir / "report.md").read_text()
