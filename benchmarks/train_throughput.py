"""Training-step throughput: ours vs MindCV 0.3.0's own ShuffleNetV2, interleaved.

Same recipe on both sides (momentum 0.9, weight decay 4e-5 without BN/bias,
cross-entropy with label smoothing 0.1, a per-step LR array), same batch and
resolution, same device and thread settings; each side uses its own model,
loss and optimizer factory. Rounds alternate which side goes first, so load
swings on a shared machine hit both. Prints images/s per side and the ratio.

    pip install mindcv==0.3.0      # benchmark-only dependency (extra `bench`)
    python benchmarks/train_throughput.py --model shufflenet_v2_x0_5 --batch-size 16 --image-size 64
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def _ours(model, classes, steps_total, args):
    from shufflenet.config import make_config
    from shufflenet.models import create_model
    from shufflenet.train.build import build_train_cell, create_optimizer, prepare_network
    from shufflenet.train.schedules import build_lr

    cfg = make_config("shufflenet_v2_0.5_ascend", {"model": model, "epoch_size": 1,
                                                   "warmup_epochs": 0, "decay_epochs": 1})
    net = create_model(model, num_classes=classes)
    if not args.plain_stem:  # what the trainer does on this device
        from mindspore import get_context

        prepare_network(net, cfg, get_context("device_target"))
    lr = build_lr(cfg, steps_total)
    cell = build_train_cell(net, cfg, create_optimizer(net, cfg, lr), "O0")
    cell.set_train(True)
    if args.jit_level:
        from mindspore import JitConfig

        cell.set_jit_config(JitConfig(jit_level=args.jit_level))
    return cell, sum(p.size for p in net.get_parameters())


def _mindcv(model, classes, steps_total, args):
    import mindspore as ms
    from mindcv.loss import create_loss
    from mindcv.models import create_model
    from mindcv.optim import create_optimizer
    from mindspore import nn

    net = create_model(model, num_classes=classes)
    lr = np.linspace(0.35, 0.0, steps_total, dtype=np.float32)
    opt = create_optimizer(net.trainable_params(), opt="momentum", lr=ms.Tensor(lr),
                           weight_decay=4e-5, momentum=0.9, weight_decay_filter="auto")
    cell = nn.TrainOneStepCell(nn.WithLossCell(net, create_loss("CE", label_smoothing=0.1)), opt)
    cell.set_train(True)
    return cell, sum(p.size for p in net.get_parameters())


def _time(cell, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        loss = cell(x, y)
    float(loss.asnumpy())  # wait for the last step
    return time.perf_counter() - start


def breakdown(cell, x, y, steps: int) -> dict:
    """Seconds per batch of our step: forward+loss alone, and the whole step.

    The difference is backward + all-reduce + optimizer update.
    """
    import mindspore as ms

    with_loss = cell.network

    @ms.jit
    def forward(a, b):
        return with_loss(a, b)

    out = {}
    for name, fn in (("forward+loss", forward), ("step", cell)):
        fn(x, y)  # compile
        start = time.perf_counter()
        for _ in range(steps):
            r = fn(x, y)
        r.asnumpy()
        out[name] = round((time.perf_counter() - start) / steps, 4)
    out["backward+update"] = round(out["step"] - out["forward+loss"], 4)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="shufflenet_v2_x0_5")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed steps per side per round")
    p.add_argument("--threads", type=int, default=None, help="MindSpore CPU threads")
    p.add_argument("--mode", type=int, default=0, help="0 graph, 1 PyNative")
    p.add_argument("--jit-level", default=None, choices=("O0", "O1", "O2"),
                   help="JIT level for our step only (experiment)")
    p.add_argument("--plain-stem", action="store_true",
                   help="ours without the CPU stem kernel swap (to measure its effect)")
    p.add_argument("--breakdown", action="store_true",
                   help="also time our forward+loss and whole step separately")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import mindspore as ms

    from shufflenet.device import init_context

    try:
        import mindcv  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- report exactly why the reference is missing
        sys.exit(f"MindCV is not importable here ({type(exc).__name__}: {exc}); "
                 f"pip install mindcv==0.3.0")
    target = init_context("auto", args.mode, args.threads)
    ms.set_seed(0)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size),
                                      dtype=np.float32))
    y = ms.Tensor(rng.integers(0, args.classes, args.batch_size).astype(np.int32))
    total = (args.rounds + 4) * args.steps + 10  # LR array long enough for every call
    sides = {"ours": _ours(args.model, args.classes, total, args),
             "mindcv": _mindcv(args.model, args.classes, total, args)}
    compile_s = {name: _time(cell, x, y, 1) for name, (cell, _) in sides.items()}
    for cell, _ in sides.values():  # one untimed round each: caches, allocator, threads
        _time(cell, x, y, args.steps)
    times = {name: [] for name in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(reversed(list(sides)))
        for name in order:
            times[name].append(_time(sides[name][0], x, y, args.steps))
    ips = {n: args.batch_size * args.steps / statistics.median(t) for n, t in times.items()}
    result = {"model": args.model, "device": target, "batch_size": args.batch_size,
              "image_size": args.image_size, "rounds": args.rounds, "steps": args.steps,
              "params": {n: int(s[1]) for n, s in sides.items()},
              "first_step_s": {n: round(v, 2) for n, v in compile_s.items()},
              "img_per_s": {n: round(v, 2) for n, v in ips.items()},
              "ratio_ours_over_mindcv": round(ips["ours"] / ips["mindcv"], 3),
              # per-round paired ratios: drifts in machine load cancel within a round
              "round_ratios": [round(m / o, 3) for o, m in zip(times["ours"], times["mindcv"])]}
    if args.breakdown:
        result["ours_seconds_per_batch"] = breakdown(sides["ours"][0], x, y, args.steps)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model} train step, batch {args.batch_size}, {args.image_size}px, {target}, "
              f"{args.rounds} interleaved rounds x {args.steps} steps")
        for n in sides:
            print(f"  {n:7s} {ips[n]:8.1f} img/s  (params {result['params'][n]:,}, "
                  f"first step {compile_s[n]:.1f} s)")
        print(f"  ratio ours/mindcv: {result['ratio_ours_over_mindcv']:.3f}x (per round: "
              f"{', '.join(f'{r:.2f}' for r in result['round_ratios'])})")
        for part, secs in result.get("ours_seconds_per_batch", {}).items():
            print(f"  ours {part:17s} {secs * 1000:8.1f} ms/batch")
    return result


if __name__ == "__main__":
    main()
