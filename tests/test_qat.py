"""Quantization-aware fine-tuning: the int8 export's own QDQ graph trained in MindSpore.

A ShuffleNetV2 x0_5 really trained on real photos (``conftest_realdata``);
its QAT start checkpoint (the int8 export's graph, calibrated on its train
split); the int8 artifact exported from a QAT checkpoint must compute what
the checkpoint's fake-quant forward computes, on the real val photos.
"""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from toolchain.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_photos_4_epochs):
    data, ckpt = real_photos_4_epochs
    return data, ckpt, tmp_path_factory.mktemp("qat")


@pytest.fixture(scope="module")
def start(trained):
    from exporters.qat_start import write_qat_start

    _, ckpt, root = trained
    path = root / "qat" / "qat_start.ckpt"
    meta = write_qat_start(ckpt, path, calib_samples=64, heldout=32, progress=False)
    return path, meta


def _val(data, meta):
    from shufflenet.data.preprocess import EvalTransform
    from toolchain.parity.inputs import resolve_inputs

    size = int(meta["image_size"])
    inputs = resolve_inputs(dataset=str(data), split="val", image_size=size,
                            model_labels=meta["labels"], num_classes=meta["num_classes"])
    tf = EvalTransform(size, meta["crop_pct"], tuple(meta["mean"]), tuple(meta["std"]),
                       meta["interpolation"])
    batches = list(inputs.batches(tf, 40))
    return np.concatenate([b.x for b in batches]), np.concatenate([b.labels for b in batches])


def test_start_checkpoint_is_the_int8_graph_with_its_calibrated_ranges(start):
    from shufflenet.checkpoint import read_checkpoint

    path, _ = start
    params, stored = read_checkpoint(path)          # CRC-checked, metadata inside
    spec = stored["qat"]
    ops = [n["op"] for n in spec["nodes"]]
    assert ops.count("QATWeight") == 57                     # 56 BN-folded convs + the classifier
    assert ops.count("QATBias") == 56                       # int32 conv biases; the Gemm's is float
    assert "BatchNormalization" not in ops and "Relu" not in ops           # folded as exported
    assert ops[-1] == "Gemm"                                               # float logits
    assert len(spec["scales"]) >= 50 and all(params[s].asnumpy() > 0 for s in spec["scales"])
    assert stored["qat_source"]["init_method"] in ("minmax", "percentile")
    assert stored["model"] == "shufflenet_v2_x0_5" and stored["image_size"] == 64


def test_fake_quant_forward_equals_the_int8_artifact_on_real_images(trained, start, tmp_path):
    from exporters import export_checkpoint
    from runtimes import create_runner
    from shufflenet.fidelity import logit_error

    data, _, _ = trained
    path, meta = start
    (res,) = export_checkpoint(path, "onnx-int8", tmp_path, progress=False)
    x, _ = _val(data, meta)
    with create_runner("mindspore", path) as ref_runner:
        fake = np.concatenate([ref_runner.infer(x[i:i + 40]) for i in range(0, len(x), 40)])
    with create_runner("onnxruntime", res.path) as art:
        out = np.concatenate([art.infer(x[i:i + 40]) for i in range(0, len(x), 40)])
    assert len(x) == 120
    assert (fake.argmax(1) == out.argmax(1)).mean() == 1.0
    assert logit_error(out, fake) < 2e-3, logit_error(out, fake)
    from shufflenet.artifact import read_artifact_metadata

    opts = read_artifact_metadata(res.path)["export_options"]
    assert opts["qat"]["scales"].startswith("learned")


def test_qat_checkpoint_exports_to_onnx_int8_only(start, tmp_path):
    path, _ = start
    res = CliRunner().invoke(main, ["export", str(path), "--format", "onnx", "-o", str(tmp_path)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "exports to onnx-int8 only" in res.output


def test_train_qat_without_a_checkpoint_is_one_clean_line(tmp_path):
    res = CliRunner().invoke(main, ["train", "-c", "demo", "--qat",
                                    "--ckpt_save_dir", str(tmp_path)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "pass --ckpt_path FP32.ckpt" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_interrupted_qat_run_resumes_where_it_stopped(trained, tmp_path):
    from shufflenet.checkpoint import read_metadata
    from shufflenet.models import load_eval_network

    _, ckpt, _ = trained
    run = tmp_path / "run"
    common = ["train", "--qat", "--ckpt_path", str(ckpt), "--ckpt_save_dir", str(run),
              "--epoch_size", "2", "--batch_size", "4", "--max_steps_per_epoch", "1",
              "--mode", "1", "--progress", "false", "--num_samples", "12",  # the teacher's
              "--val_while_train", "false"]     # logits, once per run; validation: below
    # a budget of ~0 minutes: stops after the first epoch, resumable
    first = CliRunner().invoke(main, common + ["--time_budget_minutes", "0.0001"])
    assert first.exit_code == 0, first.output
    meta = read_metadata(run / "last.ckpt")
    assert meta["epoch"] == 1 and meta["global_step"] == 1 and "qat" in meta
    assert meta["qat_teacher"] == "cached"   # auto: 12 images' logits fit in memory
    second = CliRunner().invoke(main, common + ["--resume"])
    assert second.exit_code == 0, second.output
    meta = read_metadata(run / "last.ckpt")
    assert meta["epoch"] == 2 and meta["global_step"] == 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    ev = load_eval_network(next(run.glob("shufflenet_v2_x0_5-2_*.ckpt")))
    assert type(ev.net).__name__ == "QATNetwork" and ev.metadata["recipe"]["qat"] is True


def test_qat_teacher_live_runs_the_teacher_on_each_augmented_batch(trained, tmp_path):
    """``--qat_teacher live`` (auto's choice when the logits would not fit in memory): no
    cached targets, the teacher inside the step; the checkpoint says which it was."""
    from shufflenet.checkpoint import read_metadata

    _, ckpt, _ = trained
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--qat", "--ckpt_path", str(ckpt), "--ckpt_save_dir",
                                    str(run), "--epoch_size", "1", "--batch_size", "4",
                                    "--max_steps_per_epoch", "2", "--mode", "1",
                                    "--num_samples", "12", "--qat_teacher", "live",
                                    "--progress", "false", "--val_while_train", "false"])
    assert res.exit_code == 0, res.output
    meta = read_metadata(run / "last.ckpt")
    assert meta["qat_teacher"] == "live" and meta["recipe"]["qat_teacher"] == "live"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and np.isfinite(rows[0]["loss"]) and rows[0]["loss"] > 0


def test_train_qat_validates_on_the_checkpoints_val_split_and_keeps_the_best(trained, tmp_path):
    """The fp32 run trained without validation; its data has a val split: QAT judges every
    epoch on it, against the fp32 teacher as well as the labels, keeps a best checkpoint and
    prints where it is (two steps in graph mode: validating the fake-quant network and its
    teacher op by op in PyNative took twice as long). Which epoch is best:
    tests/test_train_build.py; the measure: tests/test_validate.py."""
    from pathlib import Path

    from shufflenet.checkpoint import read_metadata
    from shufflenet.train.run_checkpoints import read_metrics

    _, ckpt, _ = trained
    assert read_metadata(ckpt)["recipe"]["val_while_train"] is False
    run = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", "--qat", "--ckpt_path", str(ckpt), "--ckpt_save_dir",
                                    str(run), "--epoch_size", "1", "--batch_size", "8",
                                    "--max_steps_per_epoch", "2", "--mode", "0",
                                    "--progress", "false", "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["validated"] is True and row["notes"] == []
    best = Path(row["best_ckpt"])
    assert best == run / "shufflenet_v2_x0_5_best.ckpt" and best.exists()
    meta = read_metadata(best)
    assert "qat" in meta and meta["metrics"]["val_top1"] == row["val_top1"]
    assert meta["qat_teacher"] == "cached"
    assert f"next: shufflenet export {best} -f onnx-int8" in res.stderr
    rows = read_metrics(run)
    (kept,) = rows
    assert 0 <= kept["val_agreement"] <= 1 and kept["val_logit_error"] > 0
    assert 0 <= kept["val_expected_lost"] <= 1
    assert meta["metrics"]["val_logit_error"] == kept["val_logit_error"]
    # the input's scale is saved, not learned; the rest trained
    from shufflenet.checkpoint import read_checkpoint
    from shufflenet.quant.network import input_scales

    before, _ = read_checkpoint(run / "qat_start.ckpt")
    after, _ = read_checkpoint(best)
    fixed = input_scales(meta["qat"])
    assert len(fixed) == 1 and all(
        np.array_equal(after[n].asnumpy(), before[n].asnumpy()) for n in fixed)
    assert any(not np.array_equal(after[n].asnumpy(), before[n].asnumpy())
               for n in meta["qat"]["params"] if n not in fixed)


def test_qat_without_a_val_split_says_so_in_one_line(trained, tmp_path):
    from toolchain.qat import prepare_qat, qat_config

    data, ckpt, _ = trained
    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (only_train / "train").symlink_to(data / "train")
    given = {"data_dir": str(only_train), "progress": False}
    cfg = qat_config(ckpt, tmp_path / "run", given)
    notes = prepare_qat(cfg, set(given))
    assert cfg["val_while_train"] is False
    assert len(notes) == 1 and notes[0].startswith("no val split to judge QAT on (")
    assert "no best checkpoint is kept" in notes[0] and "\n" not in notes[0]
    assert (tmp_path / "run" / "qat_start.ckpt").exists()


# -- the generated network trains in graph mode for as long as a recipe asks -------------------
# A graph-mode training step through ``ops.pad`` (MindSpore 2.10, CPU) never returned from its
# 18th launch (the gradient kernel spins); ``shufflenet train --qat`` on the demo hung at step 17
# of 44 because the generated network padded its MaxPool with it. The spec below has the same
# asymmetric MaxPool pads (and an asymmetric Conv pad), on real digit scans.
_TINY_SPEC = {
    "version": 1, "input": "input", "output": "logits", "num_classes": 10,
    "params": ["w0", "b0", "s0", "fc_w", "fc_b"], "scales": ["s0"],
    "zero_points": {"z0": ["uint8", 0.0]}, "constants": {},
    "nodes": [
        {"op": "QATWeight", "inputs": ["w0"], "outputs": ["w0q"]},
        {"op": "Conv", "inputs": ["input", "w0q", "b0"], "outputs": ["c0"],
         "attrs": {"strides": [2, 2], "pads": [0, 0, 1, 1]}},
        {"op": "Relu", "inputs": ["c0"], "outputs": ["r0"]},
        {"op": "QuantizeLinear", "inputs": ["r0", "s0", "z0"], "outputs": ["q0"]},
        {"op": "DequantizeLinear", "inputs": ["q0", "s0", "z0"], "outputs": ["d0"]},
        {"op": "MaxPool", "inputs": ["d0"], "outputs": ["m0"],
         "attrs": {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 0, 1, 1]}},
        {"op": "GlobalAveragePool", "inputs": ["m0"], "outputs": ["g0"]},
        {"op": "Flatten", "inputs": ["g0"], "outputs": ["f0"]},
        {"op": "Gemm", "inputs": ["f0", "fc_w", "fc_b"], "outputs": ["logits"],
         "attrs": {"transB": 1}},
    ],
}

_TRAIN_GRAPH_MODE = """
import json, sys
import numpy as np
import mindspore as ms
from mindspore import nn
from shufflenet.data.demo import demo_arrays
from shufflenet.quant.network import qat_network

ms.set_context(mode=ms.GRAPH_MODE, device_target="CPU")
spec, steps = json.loads(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
params = {"w0": rng.normal(0, 0.3, (8, 3, 3, 3)), "b0": np.zeros(8), "s0": np.array(0.05),
          "fc_w": rng.normal(0, 0.3, (10, 8)), "fc_b": np.zeros(10)}
net = qat_network(spec, {k: np.asarray(v, np.float32) for k, v in params.items()})
images, labels = demo_arrays("train", size=16)
x = ((images.astype(np.float32) / 255.0 - 0.5) / 0.25).transpose(0, 3, 1, 2)
loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
step = nn.TrainOneStepCell(loss, nn.Momentum(net.trainable_params(), 0.01, 0.9))
step.set_train(True)
for k in range(steps):
    b = slice(16 * k, 16 * (k + 1))
    value = float(step(ms.Tensor(x[b]), ms.Tensor(labels[b].astype(np.int32))).asnumpy())
    assert np.isfinite(value), (k, value)
    print("step", k + 1, flush=True)
"""


def test_generated_network_trains_past_step_17_in_graph_mode(tmp_path):
    import os
    import subprocess
    import sys

    steps = 24
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[1])     # this checkout's code in the child too
    env = dict(os.environ, GLOG_v="3",
               PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    try:
        done = subprocess.run([sys.executable, "-c", _TRAIN_GRAPH_MODE, json.dumps(_TINY_SPEC),
                               str(steps)], capture_output=True, text=True, timeout=120,
                              env=env, cwd=tmp_path, check=False)
    except subprocess.TimeoutExpired as exc:   # run() killed the child
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        last = (out.strip().splitlines() or ["no step"])[-1]
        pytest.fail(f"graph-mode QAT training hung (last line: {last})")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(steps)


def test_pad2d_is_onnx_padding(tmp_path):
    """``pad2d`` (Concat of constant edges) computes what ``ops.pad`` computes, forward."""
    import mindspore as ms
    from mindspore import ops

    from shufflenet.data.demo import demo_arrays
    from shufflenet.quant.fake_quant import pad2d

    images, _ = demo_arrays("val", size=16)
    x = ms.Tensor(images[:4].transpose(0, 3, 1, 2).astype(np.float32))
    for l, r, t, b, value in [(0, 1, 0, 1, -3.0e38), (1, 2, 0, 3, 0.0), (0, 0, 0, 0, 0.0)]:
        got = pad2d(x, l, r, t, b, value).asnumpy()
        want = ops.pad(x, (l, r, t, b), value=value).asnumpy()
        assert got.shape == want.shape and np.array_equal(got, want), (l, r, t, b)


# -- one fake-quant step per activation site, and the float teacher ----------------------------
def test_fused_fake_quant_is_the_quantize_dequantize_pair():
    """``fake_quant`` (one call per site) gives the bits and the gradients of ``dequantize(
    quantize(x))``, inside the grid, clipped at both ends, for a ReLU site (z = 0) and a
    signed one, on real image values."""
    import mindspore as ms
    from mindspore import ops

    from shufflenet.data.demo import demo_arrays
    from shufflenet.quant.fake_quant import dequantize, fake_quant, quantize

    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)     # an earlier test may have left graph mode on
    try:
        _fused_vs_pair(ms, ops, demo_arrays, dequantize, fake_quant, quantize)
    finally:
        ms.set_context(mode=mode)


def _fused_vs_pair(ms, ops, demo_arrays, dequantize, fake_quant, quantize):
    images, _ = demo_arrays("val", size=16)
    x = ms.Tensor((images[:8].transpose(0, 3, 1, 2).astype(np.float32) - 100.0) / 40.0)
    for scale, zp in [(0.013, 0.0), (0.021, 131.0), (0.004, 128.0)]:   # 0.004: clips both ends
        s = ms.Tensor(np.float32(scale))

        def pair(x, s, zp=zp):
            return dequantize(quantize(x, s, zp, 0.0, 255.0), s, zp)

        def fused(x, s, zp=zp):
            return fake_quant(x, s, zp, 0.0, 255.0)

        a, b = pair(x, s).asnumpy(), fused(x, s).asnumpy()
        assert np.array_equal(a, b), (scale, zp, np.abs(a - b).max())
        assert (b == b.min()).any() and (zp == 0.0 or (b == b.max()).sum() > 1)
        ga = ops.grad(lambda x, s: pair(x, s).sum(), (0, 1))(x, s)
        gb = ops.grad(lambda x, s: fused(x, s).sum(), (0, 1))(x, s)
        assert np.array_equal(ga[0].asnumpy(), gb[0].asnumpy())
        assert np.isclose(float(ga[1].asnumpy()), float(gb[1].asnumpy()), rtol=1e-4)


def test_generated_network_fuses_every_pair_and_its_float_twin_is_the_fp32_checkpoint(
        trained, start):
    """Every activation Quantize/Dequantize pair of the export's graph is one ``fake_quant``;
    the same graph with quantisation off, from the start checkpoint's values, computes the fp32
    checkpoint's logits on the real val photos (the teacher QAT distils from)."""
    from shufflenet.checkpoint import read_checkpoint
    from shufflenet.models import load_eval_network
    from shufflenet.quant import load_qat_teacher
    from shufflenet.quant.network import network_source

    data, ckpt, _ = trained
    path, meta = start
    params, stored = read_checkpoint(path)
    spec = dict(stored["qat"], param_shapes={n: list(params[n].shape)
                                             for n in stored["qat"]["params"]})
    pairs = sum(n["op"] == "QuantizeLinear" for n in spec["nodes"])
    src = network_source(spec)
    assert src.count("fake_quant(") == pairs and " quantize(" not in src
    import mindspore as ms

    x, _ = _val(data, meta)
    want = load_eval_network(ckpt).net(ms.Tensor(x)).asnumpy()
    got = load_qat_teacher(path)(ms.Tensor(x)).asnumpy()
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), np.abs(got - want).max()


def test_cpu_training_runs_the_qat_stem_as_matmul_and_does_not_learn_the_input_scale(
        trained, start):
    """The trainer's CPU kernel choice reaches the QAT network and its teacher: the stem (3
    input channels) becomes slices + MatMul in the generated code, to float32 rounding (each
    network swapped before its first call, compared with an unswapped twin); a swap after a
    graph-mode compile is refused; the input's scale is a parameter saved but not trained."""
    import inspect

    import mindspore as ms

    from shufflenet.quant import load_qat_network, load_qat_teacher
    from shufflenet.quant.network import input_scales
    from shufflenet.train.build import prepare_network
    from shufflenet.train.fast_stem import use_matmul_stem

    data, _, _ = trained
    path, meta = start
    x = ms.Tensor(_val(data, meta)[0][:16])
    conv, fast = load_qat_teacher(path), load_qat_teacher(path)
    assert use_matmul_stem(fast)
    assert "matmul_conv2d(" in inspect.getsource(type(fast).construct)
    assert "matmul_conv2d(" not in inspect.getsource(type(conv).construct)
    want, got = conv(x).asnumpy(), fast(x).asnumpy()
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), np.abs(got - want).max()

    net, stored = load_qat_network(path)
    plain, _ = load_qat_network(path)
    prepare_network(net, {"cpu_matmul_stem": True}, "CPU")
    assert "matmul_conv2d(" in inspect.getsource(type(net).construct)
    q_want, q_got = plain(x).asnumpy(), net(x).asnumpy()
    assert (q_got.argmax(1) == q_want.argmax(1)).all()
    assert np.abs(q_got - q_want).mean() <= 0.01 * np.abs(q_want).mean()
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)           # a compiled graph would keep Conv2D
    try:
        once = load_qat_teacher(path)
        once(x)
        with pytest.raises(RuntimeError, match="before its first call"):
            use_matmul_stem(once)
    finally:
        ms.set_context(mode=mode)
    fixed = input_scales(stored["qat"])
    trainable = {p.name for p in net.trainable_params()}
    assert fixed and not fixed & trainable
    assert len(trainable) == len(stored["qat"]["params"]) - len(fixed)
    # on another device the generated code keeps Conv2D
    other, _ = load_qat_network(path)
    prepare_network(other, {"cpu_matmul_stem": True}, "GPU")
    assert "matmul_conv2d(" not in inspect.getsource(type(other).construct)


def test_distillation_loss_is_the_squared_logit_distance_to_fp32(trained, start):
    """``qat_loss: distill`` trains on the mean over images of the squared logit distance
    between the fake-quant network and the fp32 checkpoint, measured independently here."""
    import mindspore as ms

    from shufflenet.models import load_eval_network
    from shufflenet.quant import load_qat_network, load_qat_teacher
    from shufflenet.train.build import _distill_cell

    data, ckpt, _ = trained
    path, meta = start
    x, labels = _val(data, meta)
    x = ms.Tensor(x[:16])
    student, _ = load_qat_network(path)
    cell = _distill_cell()(student, load_qat_teacher(path))
    loss = float(cell(x, ms.Tensor(labels[:16].astype(np.int32))).asnumpy())
    fq, fp32 = student(x).asnumpy(), load_eval_network(ckpt).net(x).asnumpy()
    want = float(np.mean(np.sum((fq - fp32) ** 2, axis=1)))
    assert want > 0 and np.isclose(loss, want, rtol=1e-3), (loss, want)
    # the same loss toward the teacher's logits handed over as the batch's labels (cached)
    cached = _distill_cell()(student, None)
    assert np.isclose(float(cached(x, ms.Tensor(fp32)).asnumpy()), want, rtol=1e-3)


def test_qat_loss_without_qat_is_one_clean_line(tmp_path):
    res = CliRunner().invoke(main, ["train", "-c", "demo", "--qat_loss", "labels",
                                    "--ckpt_save_dir", str(tmp_path)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "--qat_loss chooses what a --qat run learns toward" in res.output
    bad = CliRunner().invoke(main, ["train", "--qat", "--qat_loss", "logits", "--ckpt_path", "x",
                                    "--ckpt_save_dir", str(tmp_path)])
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert "qat_loss" in bad.output and "distill" in bad.output
    assert not any(tmp_path.iterdir())                   # nothing written for a refused run


def test_parity_names_a_qat_fine_tune_of_the_checkpoint_and_nothing_else():
    from toolchain.parity.comparator import fine_tuned_from

    meta = {"source_checkpoint": "x_qat_best.ckpt", "source_sha256": "q" * 64,
            "export_options": {"qat": {"fine_tuned_from_sha256": "f" * 64}}}
    assert fine_tuned_from(meta, "f" * 64) == "x_qat_best.ckpt"
    assert fine_tuned_from(meta, "e" * 64) is None           # a QAT of another checkpoint
    assert fine_tuned_from({"source_sha256": "q" * 64}, "f" * 64) is None
    assert fine_tuned_from({"export_options": {"qat": {}}}, "") is None
