"""The toolchain launches data-parallel training itself (msrun), on one node or several.

Equality checks compare with one process trained on the combined batch.
BatchNorm is frozen (``freeze_bn``) there, so the per-rank forward passes are
exactly the halves of the combined batch (with per-rank batch statistics the
two computations would differ by design, not by a bug).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import main

ROOT = Path(__file__).resolve().parents[1]
# 192 demo images, 8 per rank x 2 ranks = 16 per step: 12 steps, one epoch
TINY = {"num_samples": "192", "val_while_train": "false", "freeze_bn": "true", "seed": "3",
        "lr": "0.05", "warmup_epochs": "0", "decay_epochs": "1", "num_parallel_workers": "1",
        "mode": "0", "hflip": "0.5", "color_jitter": "0.4", "epoch_size": "1"}


def _train_args(opts: dict) -> list[str]:
    out = []
    for k, v in opts.items():
        out += [f"--{k}", str(v)]
    return out


def _cli(*args, timeout=600, **kw):
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "toolchain", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, **kw)


def _weights(path) -> dict:
    from shufflenet.checkpoint import read_checkpoint

    params, _ = read_checkpoint(path)
    return {k: (v.asnumpy() if hasattr(v, "asnumpy") else np.asarray(v)) for k, v in params.items()
            if not k.startswith(("moments", "global_step", "learning_rate", "momentum"))}


def _assert_same_weights(got: dict, ref: dict, tol: float = 1e-4) -> None:
    common = sorted(set(got) & set(ref))
    assert len(common) > 100, f"too few common parameters: {common[:5]}"
    worst = max(float(np.max(np.abs(got[k] - ref[k]))) for k in common)
    assert worst < tol, f"data-parallel vs one process on the combined batch: max |diff| {worst}"


# -- quick checks (no training) ---------------------------------------------------
def test_master_address_parsing():
    from shufflenet.errors import ConfigError
    from shufflenet.train.launch import parse_master

    assert parse_master("10.0.0.1:29500") == ("10.0.0.1", 29500)
    assert parse_master("node0") == ("node0", None)
    for bad in ("a b", "10.0.0.1:80", "host:99999", ":"):
        with pytest.raises(ConfigError):
            parse_master(bad)


_RECORD_INTERPRETER = ("import json, os, sys; from pathlib import Path; "
                       "Path(sys.argv[1], os.environ.get('MS_ROLE', '?') + os.environ.get('RANK_ID', '')"
                       " + '.json').write_text(json.dumps([sys.executable, sys.prefix]))")


def test_every_rank_runs_in_the_launchers_interpreter(tmp_path):
    """msrun's ranks (and its scheduler) run this interpreter, virtualenv included.

    The launcher put a symlink to sys.executable on the ranks' PATH; a venv's
    python linked outside the venv starts the base interpreter, and every rank
    died with "No module named 'mindspore'" wherever that lacks it. Comparing
    sys.executable and sys.prefix fails on any machine, not only on those.
    """
    from shufflenet.train.launch import (
        LaunchSpec,
        _environment,
        _msrun_command,
        free_port,
    )

    out, logs = tmp_path / "seen", tmp_path / "logs"
    out.mkdir()
    cmd = _msrun_command(LaunchSpec(devices=2), free_port(), logs,
                         ["-c", _RECORD_INTERPRETER, str(out)])
    proc = subprocess.run(cmd, env=_environment(logs), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = {f.stem: json.loads(f.read_text()) for f in out.glob("*.json")}
    assert {"MS_WORKER0", "MS_WORKER1", "MS_SCHED0"} <= set(seen), seen
    for role, (executable, prefix) in seen.items():
        assert (executable, prefix) == (sys.executable, sys.prefix), role


def test_interpreter_wrapper_replaces_a_stale_symlink(tmp_path):
    """A log folder from an older launch holds a symlink; the wrapper replaces it, not its target."""
    from shufflenet.train.launch import write_interpreter_wrapper

    target = tmp_path / "target"
    target.write_text("keep")
    link = tmp_path / "bin" / "python"
    link.parent.mkdir()
    link.symlink_to(target)
    write_interpreter_wrapper(link)
    assert not link.is_symlink() and target.read_text() == "keep"
    got = subprocess.run([str(link), "-c", "import sys; print(sys.executable, sys.prefix)"],
                         capture_output=True, text=True, timeout=60)
    assert got.stdout.split() == [sys.executable, sys.prefix], got.stderr


_WATCHED = """
import os, sys
from pathlib import Path
from shufflenet.train.launch import LaunchSpec
from shufflenet.train.rank_watch import RankWatcher

log = Path(sys.argv[1])
# stands in for msrun: starts a rank in a session of its own (as msrun does) that records its pid
rank = ("import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)")
launcher = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', sys.argv[1], "
            "sys.argv[2]], start_new_session=True); time.sleep(600)")
cmd = [sys.executable, "-c", launcher, rank, str(log / "rank0.pid")]
RankWatcher(LaunchSpec(devices=2), cmd, dict(os.environ), log, None).run()
"""


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# stands in for msrun when a rank is killed: msrun polls its workers once a second, logs the
# first one that exited and SIGKILLs the rest. The pid files appear only after all that, so the
# watcher's first look finds both ranks dead, as its 0.2 s poll did in ~1 of 6 end-to-end runs
_MSRUN_KILLS_THE_SURVIVOR = """
import subprocess, sys, time
from pathlib import Path

log, msrun_says = Path(sys.argv[1]), sys.argv[2] == "1"
ranks = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                          start_new_session=True) for _ in range(2)]
ranks[1].kill()
ranks[1].wait()
if msrun_says:
    print(f"[ERROR] ME(1:1,MainProcess):2026-12-02-00:20:45.920.000 [mindspore/parallel/cluster/"
          f"process_entity/_api.py:365] Worker process {ranks[1].pid} exit with exception. "
          f"Error code: -9.", flush=True)
ranks[0].kill()
ranks[0].wait()
for r, p in enumerate(ranks):
    (log / f"rank{r}.pid").write_text(str(p.pid))
time.sleep(600)
"""


@pytest.mark.parametrize("msrun_says", [True, False])
def test_a_rank_msrun_killed_is_not_blamed_for_the_one_that_died(tmp_path, msrun_says):
    """Found dead in the same poll, rank 0 (killed by msrun) was named instead of rank 1."""
    from shufflenet.train.launch import LaunchSpec
    from shufflenet.train.rank_watch import LaunchError, RankWatcher

    cmd = [sys.executable, "-c", _MSRUN_KILLS_THE_SURVIVOR, str(tmp_path), str(int(msrun_says))]
    start = time.monotonic()
    with pytest.raises(LaunchError) as err:
        RankWatcher(LaunchSpec(devices=2), cmd, dict(os.environ), tmp_path, None).run()
    assert time.monotonic() - start < 30
    text = str(err.value)
    if msrun_says:
        assert text.startswith("training rank 1 of 2 failed (exit code -9 (signal 9))"), text
    else:  # without msrun's word neither rank is picked at random
        assert "training rank 0" not in text and "which went first is unknown" in text, text
        assert "rank 0 (" in text and "rank 1 (" in text, text


def test_an_ignored_hangup_stays_ignored(tmp_path):
    """Under `nohup` SIGHUP is ignored; the launcher's cleanup handler must not undo that."""
    from shufflenet.train.rank_watch import _raise_on_termination

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        previous = _raise_on_termination()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.SIGHUP not in previous and signal.SIGTERM in previous
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_terminating_the_launcher_stops_the_ranks(tmp_path, sig):
    """A SIGTERM (CI timeout, `timeout`) or SIGHUP to the toolchain must not orphan msrun's ranks:
    they run in sessions of their own and would train on, holding the master port."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # the signal's default action, whatever this test inherited: under `nohup` (a CI job started
    # so) SIGHUP is ignored, and the watcher rightly keeps an ignored SIGHUP ignored (the test
    # below), so it would wait out the signal
    watcher = subprocess.Popen([sys.executable, "-c", _WATCHED, str(tmp_path)], env=env,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(sig, signal.SIG_DFL))
    pid_file, rank_pid = tmp_path / "rank0.pid", None
    try:
        deadline = time.monotonic() + 60
        while rank_pid is None and time.monotonic() < deadline:
            text = pid_file.read_text() if pid_file.exists() else ""
            rank_pid = int(text) if text.strip() else None
            time.sleep(0.1)
        assert rank_pid is not None and watcher.poll() is None, watcher.stderr.read()
        watcher.send_signal(sig)
        assert watcher.wait(timeout=20) == 128 + sig
        deadline = time.monotonic() + 5
        while _pid_alive(rank_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pid_alive(rank_pid), f"rank process {rank_pid} outlived the launcher ({sig!r})"
    finally:
        if watcher.poll() is None:
            watcher.kill()
        if rank_pid and _pid_alive(rank_pid):
            os.kill(rank_pid, signal.SIGKILL)


def test_a_node_says_what_it_waits_for():
    """`train --nodes 2` printed nothing while node 0 waited for node 1 (minutes); with the
    default loopback master a node on another machine can never join."""
    from shufflenet.train.launch import LaunchSpec, join_note

    note = join_note(LaunchSpec(devices=8, nodes=2, node_rank=1, master_addr="10.0.0.1"), 8118)
    assert note.startswith("node 1 of 2 (8 rank(s) here, 16 in all)") and "10.0.0.1:8118" in note
    assert "loopback" not in note
    assert "only nodes on this machine can join" in join_note(LaunchSpec(nodes=2), 8118)


def test_launch_spec_problems_name_the_option():
    from shufflenet.train.launch import LaunchSpec

    assert LaunchSpec(devices=8, nodes=2, node_rank=1).problems() == []
    assert LaunchSpec(devices=8, nodes=2, node_rank=1).world_size == 16
    assert "--node-rank" in LaunchSpec(nodes=2, node_rank=2).problems()[0]


@pytest.mark.parametrize("args, message", [
    (["train", "--nodes", "2", "--node-rank", "2"], "--node-rank must be in [0, 1]"),
    (["train", "--master", "host:80", "--nodes", "2"], "port must be in 1024..65535"),
    (["pipeline", "--devices", "2", "--ckpt_path", "x.ckpt"], "--ckpt_path skips it"),
    # was accepted and ignored: one process trained (and a distribute recipe lost its launch)
    (["train", "-c", "demo", "--master", "127.0.0.1:29500"], "--master is for several ranks"),
    (["pipeline", "--master", "10.0.0.1"], "--master is for several ranks"),
])
def test_bad_launch_options_are_one_line_errors(args, message, tmp_path):
    res = CliRunner().invoke(main, args + (["-o", str(tmp_path / "r")] if args[0] == "pipeline" else []))
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output


def test_distribute_recipe_on_cpu_resolves_to_one_process():
    from shufflenet.config import make_config
    from shufflenet.train.launch import LaunchSpec, resolve_spec

    spec, note = resolve_spec(make_config("shufflenet_v2_1.0_ascend", {"device_target": "CPU"}), None)
    assert spec == LaunchSpec() and "training in one process" in note
    spec, note = resolve_spec(make_config("shufflenet_v2_1.0_ascend"), LaunchSpec(devices=3))
    assert spec.devices == 3 and note is None


def test_world_size_is_in_the_train_stage_cache_key(tmp_path):
    """Another --devices is another global batch: the train stage must not be reused."""
    from shufflenet.config import make_config
    from shufflenet.train.launch import LaunchSpec
    from toolchain.pipeline.record import stable_hash
    from toolchain.pipeline.stages import _stage_train

    cfg = make_config("demo")
    ctx = {"data_fingerprint": "f" * 64}
    keys = {n: stable_hash(_stage_train(cfg, LaunchSpec(devices=n), tmp_path).inputs(ctx))
            for n in (1, 2)}
    assert keys[1] != keys[2]


# -- real runs ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One process, 16 images per step: what 2 ranks x 8 must reproduce."""
    run = tmp_path_factory.mktemp("single") / "run"
    proc = _cli("train", "-c", "demo", *_train_args(TINY), "--batch_size", "16",
                "--num_threads", "2", "--ckpt_save_dir", str(run), "--progress", "false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _weights(run / "last.ckpt")


@pytest.mark.slow
def test_documented_distribute_recipe_runs_on_cpu_in_one_process(tmp_path):
    """MindCV's recipes set distribute: True; without a launcher on CPU that is one process."""
    proc = _cli("train", "-c", "shufflenet_v2_0.5_ascend", "--dataset", "demo", "--image_resize",
                "32", "--epoch_size", "1", "--max_steps_per_epoch", "1", "--num_samples", "64",
                "--val_while_train", "false", "--ckpt_save_dir", str(tmp_path / "run"),
                "--progress", "false", "--num_parallel_workers", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "distribute: True on CPU: training in one process" in proc.stderr
    assert (tmp_path / "run" / "last.ckpt").exists()


@pytest.mark.slow
def test_pipeline_two_ranks_killed_rank_then_resume_end_to_end(tmp_path, reference):
    """`pipeline --devices 2`: a killed rank stops the stage in seconds naming it; the
    re-run resumes, trains to the same weights as one process on the combined batch,
    and export/parity/bench run on rank 0's checkpoint."""
    run = tmp_path / "run"
    args = ["pipeline", "-o", str(run), "--devices", "2", "--formats", "onnx",
            "--target", "x86-edge-ort-1t", "--samples", "16", "--bench-seconds", "0.2",
            "--set", "batch_size=8", "--set", "ckpt_save_steps=1"]
    args += [x for k, v in TINY.items() for x in ("--set", f"{k}={v}")]
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "toolchain", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    logs, last = run / "logs" / "train", run / "train" / "last.ckpt"
    deadline = time.time() + 400
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(int((logs / "rank1.pid").read_text()), signal.SIGKILL)
    killed = time.perf_counter()
    out, err = proc.communicate(timeout=120)
    stopped_in = time.perf_counter() - killed
    assert proc.returncode == 1, err[-3000:]
    print(f"\n[launch] pipeline exited {stopped_in:.2f} s after rank 1 was killed")
    assert stopped_in < 15, f"the other rank was stopped after {stopped_in:.1f} s"
    assert "Traceback" not in err, err[-3000:]
    # ~1 run in 6 msrun's own 1 s check saw the dead rank first and SIGKILLed rank 0 before the
    # watcher's 0.2 s poll, which then blamed rank 0 (test_a_rank_msrun_killed_is_not_blamed...)
    assert "training rank 1 of 2 failed" in err, err[-3000:]
    rec = json.loads((run / "run.json").read_text())
    assert rec["stages"]["train"]["status"] == "failed"
    assert "rank 1" in rec["stages"]["train"]["error"]
    for pid_file in logs.glob("rank*.pid"):  # no rank left behind
        pid = int(pid_file.read_text())
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]

    res = _cli(*args)
    rec = json.loads((run / "run.json").read_text())
    # one epoch on 192 images: the chance gate may fail the model (exit 1), nothing else may
    assert all(g.startswith("model beats chance") for g in rec["failed_gates"]), res.stderr[-3000:]
    assert res.returncode == (1 if rec["failed_gates"] else 0), res.stderr[-3000:]
    train = rec["stages"]["train"]
    assert train["metrics"]["resumed"] is True and train["inputs"]["world_size"] == 2
    assert all(s["status"] == "done" for s in rec["stages"].values())
    dist = rec["distributed"]
    assert (dist["world_size"], dist["per_rank_batch"], dist["global_batch"]) == (2, 8, 16)
    assert dist["launcher_command"].startswith("msrun --worker_num=2 --local_worker_num=2")
    ckpt = Path(train["outputs"]["checkpoint"]["path"])
    assert ckpt.parent == run / "train"
    assert rec["stages"]["export"]["inputs"]["checkpoint_sha256"] == train["outputs"]["checkpoint"]["sha256"]
    assert rec["stages"]["parity"]["metrics"]["pairs"]
    assert rec["stages"]["bench"]["metrics"]["results"]
    report = (run / "report.md").read_text()
    assert "8 per rank x 2 = 16 global" in report and "not rescaled" in report
    assert (logs / "worker_1.log").exists()  # the other rank's log is kept
    _assert_same_weights(_weights(ckpt), reference)


@pytest.mark.slow
def test_two_nodes_on_one_machine_equal_one_process(tmp_path, reference):
    """Two launcher invocations (--nodes 2 --node-rank 0/1, one worker each) on 127.0.0.1."""
    from shufflenet.train.launch import free_port

    run = tmp_path / "run"
    master = f"127.0.0.1:{free_port()}"
    common = ["train", "-c", "demo", *_train_args(TINY), "--batch_size", "8", "--devices", "1",
              "--nodes", "2", "--master", master, "--ckpt_save_dir", str(run), "--json"]
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT))
    nodes = [subprocess.Popen([sys.executable, "-m", "toolchain", *common, "--node-rank", str(r)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    outs = [p.communicate(timeout=600) for p in nodes]
    for p, (out, err) in zip(nodes, outs):
        assert p.returncode == 0, err[-3000:]
    row0, row1 = json.loads(outs[0][0]), json.loads(outs[1][0])
    assert (row0["world_size"], row0["global_batch"]) == (2, 16)
    assert "--node_rank=0" in row0["launcher_command"]
    assert row1["node_rank"] == 1 and "node 0 wrote the checkpoints" in outs[1][1]
    assert (run / "logs" / "node1" / "worker_1.log").exists()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # one writer
    _assert_same_weights(_weights(run / "last.ckpt"), reference)
