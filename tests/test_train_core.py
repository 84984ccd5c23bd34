"""End-to-end training on CPU: CLI, checkpoints, metadata, validation, fine-tuning.

Real MindSpore graph-mode training on a small slice of the demo set.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from shufflenet.checkpoint import read_checkpoint, read_metadata
from shufflenet.errors import CheckpointError, ConfigError
from shufflenet.train import train
from shufflenet.validate import validate

pytestmark = pytest.mark.slow

CONTRACT = ("model", "num_classes", "in_channels", "image_size", "labels", "mean", "std",
            "crop_pct", "interpolation", "epoch", "global_step", "recipe", "metrics",
            "data_fingerprint", "toolchain_version")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """Two short epochs through the CLI (latest_k keeping 1)."""
    from toolchain.cli import main

    run_dir = tmp_path_factory.mktemp("run")
    res = CliRunner().invoke(main, [
        "train", "-c", "demo", "--num_samples", "96", "--batch-size", "16", "--epoch_size", "2",
        "--warmup_epochs", "0", "--decay_epochs", "2", "--lr", "0.05",
        "--ckpt_save_dir", str(run_dir), "--keep_checkpoint_max", "1",
        "--ckpt_save_policy", "latest_k", "--progress", "false", "--json"])
    assert res.exit_code == 0, res.output
    return run_dir, json.loads(res.stdout)


def test_cli_train_writes_run_dir(demo_run):
    run_dir, out = demo_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        assert {"loss", "lr", "img_per_s", "val_top1", "val_top5", "val_loss"} <= set(r)
        assert np.isfinite(r["loss"]) and 0 <= r["val_top1"] <= 1
    assert out["epoch"] == 2 and out["best_ckpt"].endswith("shufflenet_v2_x0_5_best.ckpt")
    epoch_ckpts = sorted(p for p in run_dir.glob("shufflenet_v2_x0_5-*.ckpt"))
    assert len(epoch_ckpts) == 1  # latest_k with keep_checkpoint_max 1
    assert read_metadata(epoch_ckpts[0])["epoch"] == 2
    assert (run_dir / "last.ckpt").exists() and not list(run_dir.glob(".*.tmp"))


def test_checkpoint_metadata_contract(demo_run):
    run_dir, _ = demo_run
    params, meta = read_checkpoint(run_dir / "shufflenet_v2_x0_5_best.ckpt")
    assert set(CONTRACT) <= set(meta)
    assert meta["labels"] == [str(i) for i in range(10)] and meta["num_classes"] == 10
    assert meta["image_size"] == 32 and meta["crop_pct"] == 1.0
    assert meta["recipe"]["model"] == "shufflenet_v2_x0_5" and meta["recipe"]["epoch_size"] == 2
    assert "val_top1" in meta["metrics"] and len(meta["data_fingerprint"]) == 64
    assert not any(k.startswith("moments.") for k in params)  # weights only
    last, last_meta = read_checkpoint(run_dir / "last.ckpt")
    assert any(k.startswith("moments.") for k in last) and last_meta["global_step"] == 12
    assert last_meta["world_size"] == 1


def test_resume_under_another_world_size_is_refused(demo_run, tmp_path):
    """`train --resume --devices 2` on a one-process run continued its step position under
    another world (steps per epoch, shards, global batch) without a word."""
    from shufflenet.checkpoint import save_checkpoint

    run_dir, _ = demo_run
    params, meta = read_checkpoint(run_dir / "last.ckpt")
    save_checkpoint([{"name": k, "data": v} for k, v in params.items()], tmp_path / "last.ckpt",
                    dict(meta, world_size=2))
    with pytest.raises(CheckpointError, match=r"2 data-parallel rank\(s\), this one has 1"):
        train("demo", {"num_samples": 96, "batch_size": 16, "epoch_size": 3,
                       "ckpt_save_dir": str(tmp_path), "progress": False}, resume=True)


def test_validate_reproduces_the_training_metric(demo_run):
    run_dir, _ = demo_run
    best = run_dir / "shufflenet_v2_x0_5_best.ckpt"
    meta = read_metadata(best)
    # the run validated on the same 96 evenly spaced val images (num_samples)
    res = validate(ckpt_path=str(best), dataset="demo", batch_size=32, num_samples=96, mode=1,
                   progress=False)
    assert res["num_images"] == 96
    assert res["top1"] == pytest.approx(meta["metrics"]["val_top1"], abs=1e-6)
    assert res["top5"] >= res["top1"]
    # the resumable last.ckpt (weights + optimizer state) validates too
    last = validate(ckpt_path=str(run_dir / "last.ckpt"), dataset="demo", num_samples=16, mode=1,
                    progress=False)
    assert last["num_images"] == 16


def test_cli_validate_json_and_errors(demo_run, tmp_path):
    from toolchain.cli import main

    run_dir, _ = demo_run
    best = str(run_dir / "shufflenet_v2_x0_5_best.ckpt")
    res = CliRunner().invoke(main, ["validate", "--ckpt_path", best, "--dataset", "demo",
                                    "--num_samples", "40", "--mode", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["num_images"] == 40 and {"top1", "top5", "loss"} <= set(out)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"garbage" * 10)
    res = CliRunner().invoke(main, ["validate", "--ckpt_path", str(bad), "--dataset", "demo"])
    assert res.exit_code == 1 and "corrupt" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["validate", "--model", "shufflenet_v2_x0_5", "--dataset", "demo"])
    assert res.exit_code == 1 and "--ckpt_path" in res.output


def test_resume_needs_a_last_checkpoint(tmp_path):
    from shufflenet.config import make_config

    cfg = make_config("demo", {"ckpt_save_dir": str(tmp_path), "progress": False})
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(cfg, resume=True)
    assert cfg.resume is False  # the caller's config is not changed


def test_finetune_swaps_the_head(demo_run, tmp_path):
    """A 10-class checkpoint fine-tuned on a 3-class folder dataset."""
    run_dir, _ = demo_run
    from shufflenet.data.demo import demo_arrays

    images, labels = demo_arrays("train", 32)
    for cls in (0, 1, 2):
        d = tmp_path / "data" / "train" / f"digit{cls}"
        d.mkdir(parents=True)
        for i in np.flatnonzero(labels == cls)[:8]:
            Image.fromarray(images[i]).save(d / f"{i}.png")
    src_ckpt = run_dir / "shufflenet_v2_x0_5_best.ckpt"
    src_params, _ = read_checkpoint(src_ckpt)
    result = train("demo", {"dataset": "imagenet", "data_dir": str(tmp_path / "data"),
                            "ckpt_path": str(src_ckpt), "val_while_train": False,
                            "epoch_size": 1, "batch_size": 8, "lr": 1e-9, "warmup_epochs": 0,
                            "ckpt_save_dir": str(tmp_path / "ft"), "progress": False})
    params, meta = read_checkpoint(result.last_ckpt)
    assert meta["num_classes"] == 3 and meta["labels"] == ["digit0", "digit1", "digit2"]
    assert params["classifier.weight"].shape == (3, 1024)
    w0 = src_params["first_conv.0.weight"].asnumpy()
    assert np.allclose(params["first_conv.0.weight"].asnumpy(), w0, atol=1e-6)  # backbone kept


def test_too_few_images_for_a_batch_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="lower batch_size"):
        train("demo", {"num_samples": 10, "batch_size": 32, "ckpt_save_dir": str(tmp_path),
                       "progress": False})
