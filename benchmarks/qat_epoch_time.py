"""QAT step time vs fp32 step time: the same data, batch, model and machine, interleaved.

Trains, through the trainer's own step cell (:func:`shufflenet.train.build.build_train_cell`,
after its per-device kernel choices, :func:`shufflenet.train.build.prepare_network`),
in graph mode, ``--steps`` steps each after ``--warmup`` steps (the graph compile),
alternating blocks so all see the same machine load:

* ``fp32``: the fp32 network (BatchNorm in training mode), the recipe's loss;
* ``qat_labels``: its QAT network (the int8 export's graph, fake-quantised:
  :mod:`shufflenet.quant`), the recipe's loss (``--qat_loss labels``);
* ``qat_distill``: the same, distilling toward the fp32 teacher's logits (the default
  ``--qat_loss``), given with the batch as the trainer's default ``--qat_teacher`` gives
  them (computed once per training image: no teacher in the step);
* ``qat_distill_live``: distilling with the teacher run inside the step
  (``--qat_teacher live``, what ``auto`` does when the logits would not fit in memory);
* ``qat_unfused``: ``qat_labels`` with a Quantize and a Dequantize call per activation
  site, as the generator wrote it before one ``fake_quant`` per site (the gain of fusing);
* ``graph_float``: the QAT network's own graph with every fake-quant step an identity,
  trainable, the recipe's loss: what the export's graph costs without quantisation, so
  ``qat_labels / graph_float`` is the cost of fake quantisation itself.

It prints the median step time of each and the ratios to fp32 (goal: QAT <= 1.5x fp32).

    python benchmarks/qat_epoch_time.py --ckpt run/best.ckpt [--batch 16] [--steps 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def step_cell(net, cfg, teacher=None, lr: float = 1e-4, logit_targets: bool = False):
    """The trainer's step cell for ``net``, after the trainer's own per-device kernel choices
    (on CPU the stem as slices + MatMul, for the student and the teacher alike)."""
    import mindspore as ms
    from mindspore import nn

    from shufflenet.train.build import build_train_cell, prepare_network

    for n in (net, teacher):
        if n is not None:
            prepare_network(n, cfg, ms.get_context("device_target"))
    opt = nn.Momentum(net.trainable_params(), lr, 0.9)
    cell = build_train_cell(net, cfg, opt, "O0", teacher=teacher, logit_targets=logit_targets)
    cell.set_train(True)
    return cell


def unfused_qat_network(path):
    """The QAT network of ``path`` generated without fusing Quantize/Dequantize pairs."""
    from shufflenet.checkpoint import read_checkpoint
    from shufflenet.quant import qat_network

    params, meta = read_checkpoint(path)
    return qat_network(meta["qat"], params, fuse=False)


def float_graph_network(path):
    """The QAT checkpoint's graph with fake quantisation off and its values trainable."""
    from shufflenet.checkpoint import read_checkpoint
    from shufflenet.quant import qat_network

    params, meta = read_checkpoint(path)
    return qat_network(meta["qat"], params, quantized=False, frozen=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="an fp32 checkpoint")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per model per block")
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import mindspore as ms

    from exporters.qat_start import write_qat_start
    from shufflenet.config import make_config
    from shufflenet.models import load_eval_network
    from shufflenet.quant import load_qat_network, load_qat_teacher

    work = Path(tempfile.mkdtemp(prefix="qat_epoch."))
    meta = write_qat_start(args.ckpt, work / "qat_start.ckpt", calib_samples=64, heldout=0,
                           progress=False)
    ms.set_context(mode=ms.GRAPH_MODE)
    fp32 = load_eval_network(args.ckpt).net
    start = work / "qat_start.ckpt"
    cfg = make_config("demo")
    size, n_cls = int(meta["image_size"]), int(meta["num_classes"])
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.randn(args.batch, 3, size, size).astype(np.float32))
    y = ms.Tensor(rng.randint(0, n_cls, args.batch).astype(np.int32))
    teacher = load_qat_teacher(start)
    cells = {"fp32": step_cell(fp32, cfg),
             "qat_labels": step_cell(load_qat_network(start)[0], cfg),
             "qat_distill": step_cell(load_qat_network(start)[0], cfg, logit_targets=True),
             "qat_distill_live": step_cell(load_qat_network(start)[0], cfg, teacher=teacher),
             "qat_unfused": step_cell(unfused_qat_network(start), cfg),
             "graph_float": step_cell(float_graph_network(start), cfg)}
    logits = ms.Tensor(teacher(x).asnumpy())     # what the trainer computes once per image
    batch = {k: (x, logits if k == "qat_distill" else y) for k in cells}
    compile_s = {}
    for k, c in cells.items():
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            c(*batch[k]).asnumpy()
        compile_s[k] = round(time.perf_counter() - t0, 1)
    times = {k: [] for k in cells}
    for _ in range(args.blocks):
        for k, c in cells.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                c(*batch[k]).asnumpy()
                times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    res = {"model": meta["model"], "image_size": size, "batch": args.batch,
           "median_step_s": {k: round(v, 4) for k, v in med.items()},
           "vs_fp32": {k: round(v / med["fp32"], 3) for k, v in med.items() if k != "fp32"},
           "warmup_s": compile_s, "device": ms.get_context("device_target")}
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{res['model']} {size} px, batch {args.batch}, graph mode, "
              f"{args.blocks}x{args.steps} interleaved steps each on {res['device']}")
        print("| network | s/step (median) | x fp32 | first steps (compile) s |")
        print("|---|---|---|---|")
        for k, v in med.items():
            ratio = "1" if k == "fp32" else f"{res['vs_fp32'][k]:.2f}"
            print(f"| {k} | {v:.3f} | {ratio} | {compile_s[k]} |")
        print("goal: QAT <= 1.5x fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
