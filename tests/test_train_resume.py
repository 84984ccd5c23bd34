"""A run killed with SIGKILL mid-epoch and resumed ends with the same weights.

Three real training processes (CPU, graph mode, fixed seed): an
uninterrupted one, one killed right after its first mid-epoch `last.ckpt`,
and its resumption. The augmentation is on (crops, flips, jitter, erasing):
the data order and every random draw are functions of (seed, epoch, index).
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

from shufflenet.checkpoint import read_checkpoint

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"num_samples": 96, "batch_size": 8, "epoch_size": 2, "ckpt_save_steps": 2,
           "val_while_train": False, "progress": False, "seed": 7, "lr": 0.05,
           "warmup_epochs": 0.5, "decay_epochs": 1.5, "hflip": 0.5, "color_jitter": 0.4,
           "re_prob": 0.5, "num_parallel_workers": 2, "num_threads": 1}


def _script(run_dir: Path, resume: bool) -> str:
    opts = dict(OPTIONS, ckpt_save_dir=str(run_dir))
    return (f"import json\nfrom shufflenet.train import train\n"
            f"train('demo', json.loads({json.dumps(opts)!r}), resume={resume})\n")


def _env():
    env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT))
    return env


def _run(run_dir: Path, resume: bool = False) -> None:
    proc = subprocess.run([sys.executable, "-c", _script(run_dir, resume)], env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    # the uninterrupted reference runs alongside the run that gets killed
    ref_proc = subprocess.Popen([sys.executable, "-c", _script(ref, False)], env=_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen([sys.executable, "-c", _script(killed, False)], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "last.ckpt").exists():
        assert proc.poll() is None, "training ended before writing last.ckpt"
        assert time.time() < deadline, "no last.ckpt within 240 s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, meta = read_checkpoint(killed / "last.ckpt")
    assert meta["epoch"] == 0 and 0 < meta["step_in_epoch"] < 12, meta  # really mid-epoch
    assert not (killed / "metrics.jsonl").exists()

    _, ref_err = ref_proc.communicate(timeout=300)
    assert ref_proc.returncode == 0, ref_err[-3000:]
    _run(killed, resume=True)

    want, want_meta = read_checkpoint(ref / "last.ckpt")
    got, got_meta = read_checkpoint(killed / "last.ckpt")
    assert got_meta["global_step"] == want_meta["global_step"] == 24
    assert set(got) == set(want)
    worst = max(float(np.max(np.abs(got[k].asnumpy() - want[k].asnumpy()))) for k in want)
    assert worst <= 1e-6, f"max |difference| {worst}"
    rows = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
