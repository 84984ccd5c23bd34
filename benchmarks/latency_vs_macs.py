"""Why latency budgets are not scaled by MACs: ONNX Runtime latency against MACs, interleaved.

    python benchmarks/latency_vs_macs.py [--rounds 15] [--per-round 20] [--threads 1]

Exports seeded x0_5 and x1_0 checkpoints (latency does not depend on weight
values) at several input sizes to optimised ONNX, opens one ONNX Runtime
runner per artifact and times them round-robin (every round visits every
runner in a new random order, so machine noise hits all alike). Prints, per
artifact, its MACs and median latency as ratios to x1_0 at 224 px, the size
the built-in budgets are sized for. If latency followed MACs, the two ratio
columns would agree; the gap is what a MAC-scaled budget would get wrong.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (model, input size); the first is the reference (the built-in budgets' size)
CASES = [("shufflenet_v2_x1_0", 224), ("shufflenet_v2_x1_0", 112), ("shufflenet_v2_x0_5", 224),
         ("shufflenet_v2_x0_5", 64), ("shufflenet_v2_x0_5", 32)]


def build(out: Path, model: str, size: int) -> tuple[Path, int]:
    """(optimised ONNX path, MACs) for ``model`` at ``size`` px, 10 classes."""
    import mindspore as ms

    from exporters import export_checkpoint
    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.macs import count_macs
    from shufflenet.models import create_model

    ms.set_seed(0)
    net = create_model(model, num_classes=10)
    ckpt = out / f"{model}_{size}.ckpt"
    save_checkpoint(net, ckpt, metadata={"model": model, "num_classes": 10, "image_size": size})
    folder = out / f"{model}_{size}"
    folder.mkdir(exist_ok=True)
    path = Path(export_checkpoint(ckpt, ["onnx"], folder, image_size=size)[0].path)
    return path, count_macs(net, (size, size))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-round", type=int, default=20, help="timed runs per runner per round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import runtimes
    from toolchain.bench import input_batch
    from toolchain.output import format_table

    out = Path(tempfile.mkdtemp(prefix="bench-latency-macs-"))
    built = {}
    for model, size in CASES:
        print(f"exporting {model} at {size} px", file=sys.stderr)
        built[(model, size)] = build(out, model, size)
    runners = {}
    for key, (path, _) in built.items():
        art = runtimes.resolve_artifact(path)
        r = runtimes.create_runner("onnxruntime", art, threads=args.threads).activate()
        x = input_batch({**art.metadata, "image_size": art.image_size}, 1)
        for _ in range(20):  # warm-up
            r.infer(x)
        runners[key] = (r, x)
    times = {k: [] for k in runners}
    rng = random.Random(0)
    for i in range(args.rounds):
        order = list(runners)
        rng.shuffle(order)
        for key in order:
            r, x = runners[key]
            for _ in range(args.per_round):
                t0 = time.perf_counter()
                r.infer(x)
                times[key].append(time.perf_counter() - t0)
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
    ref = CASES[0]
    ref_ms = float(np.median(times[ref])) * 1e3
    ref_macs = built[ref][1]
    rows = []
    for key in CASES:
        ms = float(np.median(times[key])) * 1e3
        macs = built[key][1]
        rows.append({"artifact": f"{key[0]} @ {key[1]} px", "mmacs": macs / 1e6, "p50_ms": ms,
                     "macs_ratio": macs / ref_macs, "latency_ratio": ms / ref_ms,
                     "gap": (ms / ref_ms) / (macs / ref_macs)})
    print(format_table(rows, [("artifact", "artifact"), ("mmacs", "MMACs"), ("p50_ms", "p50 ms"),
                              ("macs_ratio", "MACs / ref"), ("latency_ratio", "latency / ref"),
                              ("gap", "latency ratio / MACs ratio")]))
    print(f"\nreference: {ref[0]} @ {ref[1]} px; ONNX Runtime, {args.threads} thread(s), batch 1, "
          f"{args.rounds} interleaved rounds x {args.per_round} runs")
    for r, _ in runners.values():
        r.deactivate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
