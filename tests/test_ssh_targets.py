"""ssh targets against a real OpenSSH server on 127.0.0.1 (started here, key-only auth)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest_runtimes import BATCH, resolved_artifacts
from conftest_ssh import start_sshd, stop_sshd

import runtimes
from runtimes.ssh import SshHost
from runtimes.targets import SshOptions, Target, load_targets, normalize_arch
from shufflenet.errors import ConfigError, RuntimeEngineError
from shufflenet.train.launch import write_interpreter_wrapper
from toolchain.bench import bench_target, check_budgets, input_batch
from toolchain.cli import main


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    stop_sshd(server)


@pytest.fixture(scope="module")
def quoted_python(tmp_path_factory):
    """This Python behind a path with a space and a quote: proves remote quoting works."""
    d = tmp_path_factory.mktemp("py") / "it's a dir"
    d.mkdir()
    # the launcher's wrapper (execs this interpreter): a venv's python linked outside its
    # folder loses the venv (no pyvenv.cfg beside the link)
    return str(write_interpreter_wrapper(d / "python 3"))


def test_quoted_python_is_this_environment(quoted_python):
    """The interpreter the remote agent gets is this one, virtualenv included.

    A symlink to a venv's python outside the venv folder starts the base
    interpreter (no pyvenv.cfg beside the link) and the agent died with
    ModuleNotFoundError; CI now runs the suite inside a venv, where this fails
    for a link and passes for the wrapper.
    """
    import subprocess

    out = subprocess.run([quoted_python, "-c", "import sys; print(sys.prefix)"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sys.prefix


def _remote_target(sshd, python, **kw) -> Target:
    ssh = SshOptions(identity_file=str(sshd.client_key), known_hosts=str(sshd.known_hosts),
                     python=python, connect_timeout_s=10)
    base = dict(name="loopback-ort", engine="onnxruntime", threads=1, batch=BATCH,
                iterations=20, where=sshd.where, ssh=ssh)
    base.update(kw)
    return Target(**base)


def test_ssh_round_trip_matches_local(sshd, quoted_python):
    onnx = resolved_artifacts()[1]["onnx"]
    target = _remote_target(sshd, quoted_python)
    phases = []
    res = bench_target(onnx, target, progress=lambda phase, n: phases.append(phase))
    assert res.where == sshd.where and res.target == "loopback-ort"
    assert res.iterations == 20 and len(res.times_ms) == 20
    assert 0 < res.min_ms <= res.p50_ms <= res.p90_ms <= res.p99_ms <= res.max_ms
    assert res.peak_rss_mb > 10 and res.load_s > 0 and res.engine_version
    assert res.fingerprint["logical_cores"] >= 1 and res.fingerprint["cpu"]
    assert "measure" in phases  # progress lines travel back over ssh
    # the remote agent's logits equal a local runner's on the same batch
    meta = onnx.metadata
    with runtimes.create_runner("onnxruntime", onnx, threads=1) as r:
        local = r.infer(input_batch(meta, BATCH))
    np.testing.assert_allclose(res.output, local, rtol=1e-5, atol=1e-6)
    assert check_budgets(res, target) == []


def test_ssh_target_from_yaml_through_cli(sshd, quoted_python, tmp_path):
    onnx = resolved_artifacts()[1]["onnx"]
    f = tmp_path / "targets.yaml"
    f.write_text(
        "targets:\n  loopback:\n    engine: onnxruntime\n    threads: 1\n"
        f"    batch: {BATCH}\n    iterations: 15\n    where: {sshd.where}\n"
        f"    arch: {normalize_arch(platform.machine())}\n"
        "    sized_for: {model: shufflenet_v2_x0_5, input_size: 64}\n"
        f"    budgets: {{p50_ms: 5000, peak_rss_mb: 4000}}\n"
        f"    ssh:\n      identity_file: {json.dumps(str(sshd.client_key))}\n"
        f"      known_hosts: {json.dumps(str(sshd.known_hosts))}\n"
        f"      python: {json.dumps(quoted_python)}\n")
    assert load_targets(f)["loopback"].is_remote
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", str(f), "-t", "loopback", "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["passed"] is True and report["results"][0]["where"] == sshd.where
    assert [c["status"] for c in report["budgets"]] == ["PASS", "PASS"]
    # without cpu_class the named ssh device is the device; with one, it must be of that class
    f.write_text(f.read_text().replace("    where:", "    cpu_class: [Cortex-X925]\n    where:"))
    res = CliRunner().invoke(main, ["bench", str(onnx), "--targets", str(f), "-t", "loopback", "--json"])
    report = json.loads(res.stdout)
    assert res.exit_code == 0 and report["passed"] is None, res.output
    assert "not in the target's cpu_class (Cortex-X925)" in report["budgets"][0]["reason"]


def test_host_key_checking_stays_on(sshd, quoted_python, tmp_path):
    onnx = resolved_artifacts()[1]["onnx"]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    target = _remote_target(sshd, quoted_python)
    target = dataclasses.replace(target, ssh=dataclasses.replace(target.ssh, known_hosts=str(empty)))
    with pytest.raises(RuntimeEngineError, match=r"cannot reach ssh://.*Host key verification failed.*"
                                                 r"host-key checking stays on"):
        bench_target(onnx, target)
    # ... unless the target turns it off explicitly
    off = dataclasses.replace(target, iterations=10, ssh=dataclasses.replace(
        target.ssh, strict_host_key_checking=False, known_hosts=None))
    assert bench_target(onnx, off).iterations == 10


def test_unreachable_host_is_a_clear_error(sshd, quoted_python):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    onnx = resolved_artifacts()[1]["onnx"]
    target = _remote_target(sshd, quoted_python, where=f"ssh://{sshd.user}@127.0.0.1:{closed}")
    with pytest.raises(RuntimeEngineError, match=rf"cannot reach ssh://.*:{closed}: .*refused"):
        bench_target(onnx, target)
    res = CliRunner().invoke(main, ["bench", str(onnx), "-t", "nowhere", "--targets",
                                    str(_yaml_for(target, sshd))])
    assert res.exit_code == 1 and "cannot reach" in res.output and "Traceback" not in res.output


def _yaml_for(target, sshd):
    import tempfile

    f = os.path.join(tempfile.mkdtemp(), "t.yaml")
    with open(f, "w") as fh:
        fh.write(f"targets:\n  nowhere:\n    engine: onnxruntime\n    batch: {BATCH}\n"
                 f"    where: {target.where}\n    ssh: {{identity_file: {json.dumps(str(sshd.client_key))}, "
                 f"known_hosts: {json.dumps(str(sshd.known_hosts))}}}\n")
    return f


def test_remote_agent_errors_come_back(sshd, quoted_python, tmp_path):
    """A remote engine failure (here: a missing python) comes back as one clear line."""
    onnx = resolved_artifacts()[1]["onnx"]
    target = _remote_target(sshd, str(tmp_path / "no such python"))
    with pytest.raises(RuntimeEngineError, match=r"the agent on ssh://.* stopped .*no such python"):
        bench_target(onnx, target)
    # an option value only the device's engine can refuse comes back as the agent's one line
    bad_engine = _remote_target(sshd, quoted_python,
                                options={"providers": ["NoSuchExecutionProvider"]})
    with pytest.raises(RuntimeEngineError, match=r"agent on ssh://.*: RuntimeEngineError: .*"
                                                 r"NoSuchExecutionProvider"):
        bench_target(onnx, bad_engine)


def test_ssh_argv_quotes_and_keeps_host_key_checking():
    host = SshHost("ssh://me@example.com:2222", SshOptions(known_hosts="/k h"))
    argv = host.ssh_argv("echo")
    assert argv[:1] == ["ssh"] and "StrictHostKeyChecking=yes" in argv
    assert "UserKnownHostsFile=/k h" in argv and argv[argv.index("-p") + 1] == "2222"
    assert argv[-3:] == ["--", "me@example.com", "echo"]
    with pytest.raises(RuntimeEngineError, match="starting with '-'"):
        SshHost("ssh://-oProxyCommand=x@h")
    with pytest.raises(RuntimeEngineError, match="bad remote target"):
        SshHost("ssh://h:notaport")


def test_checkpoint_engine_cannot_go_remote(sshd):
    ckpt = resolved_artifacts()[0]
    t = Target(name="ms-remote", engine="mindspore", where=sshd.where, batch=BATCH)
    with pytest.raises(ConfigError, match="runs only locally"):
        bench_target(ckpt, t)
