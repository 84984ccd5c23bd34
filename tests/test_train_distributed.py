"""Data-parallel training: 2 CPU ranks under msrun vs one process on the combined batch.

BatchNorm is frozen (``freeze_bn``) so that the per-rank forward passes are
exactly the two halves of the combined batch; with per-rank batch statistics
the two would differ by design, not by a bug.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HARNESS = """
import json, sys
import numpy as np
from shufflenet.train import train
opts, out = json.loads(sys.argv[1]), sys.argv[2]
result = train("demo", opts)
rank = 0
if opts.get("distribute"):
    from mindspore.communication import get_rank
    rank = get_rank()
np.savez(f"{out}/rank{rank}.npz", **{p.name: p.asnumpy() for p in result.model.get_parameters()})
"""
BASE = {"num_samples": 64, "epoch_size": 1, "freeze_bn": True, "val_while_train": False,
        "progress": False, "seed": 3, "lr": 0.05, "warmup_epochs": 0, "decay_epochs": 1,
        "num_parallel_workers": 1, "mode": 0, "hflip": 0.5, "color_jitter": 0.4}


def _msrun_env(tmp_path) -> dict:
    """msrun and the `python` it starts ranks with are this environment's, whatever PATH says."""
    from shufflenet.train.launch import write_interpreter_wrapper

    bin_dir = tmp_path / "bin"
    write_interpreter_wrapper(bin_dir / "python")
    path = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable),
                            os.environ.get("PATH", "")])
    return dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT), PATH=path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_single_process_on_combined_batch(tmp_path):
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    env = _msrun_env(tmp_path)
    single, dp = tmp_path / "single", tmp_path / "dp"
    single.mkdir()
    dp.mkdir()
    opts = dict(BASE, batch_size=16, ckpt_save_dir=str(single / "run"), num_threads=2)
    proc = subprocess.run([sys.executable, str(script), json.dumps(opts), str(single)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    opts = dict(BASE, batch_size=8, distribute=True, ckpt_save_dir=str(dp / "run"), num_threads=1)
    proc = subprocess.run(
        ["msrun", "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
         f"--master_port={_free_port()}", f"--log_dir={tmp_path / 'logs'}", "--join=True",
         str(script), json.dumps(opts), str(dp)],
        env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    logs = "".join(p.read_text()[-1500:] for p in (tmp_path / "logs").glob("*.log"))
    assert proc.returncode == 0, logs
    r0, r1, ref = (np.load(dp / "rank0.npz"), np.load(dp / "rank1.npz"),
                   np.load(single / "rank0.npz"))
    assert set(r0.files) == set(ref.files)
    for k in ref.files:
        assert np.array_equal(r0[k], r1[k]), f"ranks differ on {k}"
    worst = max(float(np.max(np.abs(r0[k] - ref[k]))) for k in ref.files)
    assert worst < 1e-4, f"data-parallel vs single process: max |difference| {worst}"
    # the runs really trained: the weights moved far more than they disagree
    import mindspore as ms

    from shufflenet.models import create_model

    ms.set_seed(BASE["seed"])  # the trainer seeds, then builds the model: same initial weights
    init = {p.name: p.asnumpy() for p in create_model("shufflenet_v2_x0_5",
                                                     num_classes=10).get_parameters()}
    moved = max(float(np.max(np.abs(ref[k] - init[k]))) for k in ref.files)
    assert moved > 100 * max(worst, 1e-7), (moved, worst)
    # only rank 0 wrote the run directory
    assert (dp / "run" / "last.ckpt").exists()


def test_documented_msrun_cli_launch_runs_and_only_rank0_writes(tmp_path):
    """The README's launch line (`msrun ... python -m toolchain train ... --distribute`) works."""
    env = _msrun_env(tmp_path)
    run = tmp_path / "run"
    proc = subprocess.run(
        ["msrun", "--worker_num=2", "--local_worker_num=2", "--master_addr=127.0.0.1",
         f"--master_port={_free_port()}", f"--log_dir={tmp_path / 'logs'}", "--join=True",
         "python", "-m", "toolchain", "train", "-c", "demo", "--distribute", "--epoch_size", "1",
         "--max_steps_per_epoch", "2", "--num_samples", "64", "--val_while_train", "false",
         "--ckpt_save_dir", str(run), "--num_parallel_workers", "1"],
        env=env, capture_output=True, text=True, timeout=400, cwd=tmp_path)
    logs = "".join(p.read_text()[-1500:] for p in (tmp_path / "logs").glob("*.log"))
    assert proc.returncode == 0, logs
    meta_lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(meta_lines) == 1            # one writer: rank 0
    assert (run / "last.ckpt").exists()
