"""QAT epoch time vs fp32 epoch time: the same data, batch, model and machine, interleaved.

Trains (a) the fp32 network and (b) its QAT network (the int8 export's graph,
fake-quantised: :mod:`shufflenet.quant`) through the project's trainer step
cell, in graph mode, ``--steps`` steps each after ``--warmup`` steps (the graph
compile), alternating A/B/A/B blocks so both see the same machine load, and
prints the median step time of each and the ratio (goal: QAT <= 1.5x fp32).

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


def step_cell(net, lr: float = 1e-4):
    from mindspore import nn

    opt = nn.Momentum(net.trainable_params(), lr, 0.9)
    cell = nn.TrainOneStepCell(nn.WithLossCell(net, nn.CrossEntropyLoss()), opt)
    cell.set_train(True)
    return cell


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
    from shufflenet.models import load_eval_network
    from shufflenet.quant import load_qat_network

    work = Path(tempfile.mkdtemp(prefix="qat_epoch."))
    meta = write_qat_start(args.ckpt, work / "qat_start.ckpt", calib_samples=64, heldout=0,
                           progress=False)
    ms.set_context(mode=ms.GRAPH_MODE)
    fp32 = load_eval_network(args.ckpt).net
    qat, _ = load_qat_network(work / "qat_start.ckpt")
    size, n_cls = int(meta["image_size"]), int(meta["num_classes"])
    rng = np.random.RandomState(0)
    x = ms.Tensor(rng.randn(args.batch, 3, size, size).astype(np.float32))
    y = ms.Tensor(rng.randint(0, n_cls, args.batch).astype(np.int32))
    cells = {"fp32": step_cell(fp32), "qat": step_cell(qat)}
    compile_s = {}
    for k, c in cells.items():
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            c(x, y).asnumpy()
        compile_s[k] = round(time.perf_counter() - t0, 1)
    times = {k: [] for k in cells}
    for _ in range(args.blocks):
        for k, c in cells.items():
            for _ in range(args.steps):
                t0 = time.perf_counter()
                c(x, y).asnumpy()
                times[k].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    res = {"model": meta["model"], "image_size": size, "batch": args.batch,
           "median_step_s": {k: round(v, 4) for k, v in med.items()},
           "qat_vs_fp32": round(med["qat"] / med["fp32"], 3), "warmup_s": compile_s,
           "device": ms.get_context("device_target")}
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{res['model']} {size} px, batch {args.batch}, graph mode, "
              f"{args.blocks}x{args.steps} interleaved steps each on {res['device']}")
        print(f"fp32 {med['fp32']:.3f} s/step, QAT {med['qat']:.3f} s/step: "
              f"QAT = {res['qat_vs_fp32']:.2f}x fp32 (goal <= 1.5x); "
              f"first {args.warmup} steps (compile): {compile_s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
