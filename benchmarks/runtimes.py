"""Every installed engine on the same shufflenet_v2_x1_0 artifacts, 1 and 2 threads, interleaved.

    python benchmarks/runtimes.py [--rounds 12] [--per-round 5] [--out DIR] [--json FILE]

Exports one x1_0 checkpoint (seeded random weights: latency does not depend
on their values; 1000 classes, 224 px, batch 1) to every format whose engine
is installed, opens one runner per (engine, artifact, threads), then runs
them round-robin -- every round visits every runner in a new random order --
so machine noise hits all of them alike. Reports the median latency and its
ratio to ONNX Runtime fp32 at the same thread count: the table a user reads
to pick an engine. Timings on shared machines move between runs; compare
rows of one run only.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("GLOG_v", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "shufflenet_v2_x1_0"
# (format, engine, options, label)
CONFIGS = [
    ("onnx", "onnxruntime", {}, "ORT fp32 (optimised ONNX)"),
    ("onnx-raw", "onnxruntime", {}, "ORT fp32 (raw MindSpore ONNX)"),
    ("onnx-fp16", "onnxruntime", {}, "ORT fp16"),
    ("onnx-int8", "onnxruntime", {}, "ORT int8 QDQ"),
    ("openvino", "openvino", {"inference_precision": "f32"}, "OpenVINO f32"),
    ("openvino", "openvino", {"inference_precision": "bf16"}, "OpenVINO bf16 hint"),
    ("mnn", "mnn", {"precision": "high"}, "MNN fp32"),
    ("ncnn", "ncnn", {}, "ncnn fp32"),
    ("tflite", "tflite", {}, "LiteRT fp32"),
    ("mindir", "mindir", {}, "MindSpore MindIR"),
]


def build_artifacts(out: Path, formats: list[str]) -> dict:
    import mindspore as ms

    from exporters import FORMATS, export_checkpoint
    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    done = {f: out / f"{MODEL}{FORMATS[f].suffix}" for f in formats}
    done = {f: p for f, p in done.items() if p.exists()}  # --out reuses earlier exports
    ckpt = out / f"{MODEL}.ckpt"
    if not ckpt.exists():
        ms.set_seed(0)
        save_checkpoint(create_model(MODEL, num_classes=1000), ckpt,
                        metadata={"model": MODEL, "num_classes": 1000, "image_size": 224})
    for fmt in [f for f in formats if f not in done]:  # one at a time: a failure is not fatal
        try:
            done[fmt] = Path(export_checkpoint(ckpt, [fmt], out)[0].path)
        except Exception as exc:
            print(f"[skip] export {fmt}: {str(exc).splitlines()[0][:150]}", file=sys.stderr)
    return done


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--per-round", type=int, default=5, help="timed runs per runner per round")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out", default=None,
                    help="artifact folder (default: a temp folder); artifacts already there are reused")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    import runtimes
    from runtimes import agent
    from toolchain.bench import input_batch
    from toolchain.output import format_table

    installed = set(runtimes.available_engines())
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-runtimes-"))
    out.mkdir(parents=True, exist_ok=True)
    wanted = sorted({f for f, e, _, _ in CONFIGS if e in installed})
    arts = build_artifacts(out, wanted)
    threads = [int(t) for t in args.threads.split(",")]
    x = input_batch(runtimes.resolve_artifact(arts["onnx"]).metadata, 1)

    runners, notes = [], []
    for fmt, engine, opts, label in CONFIGS:
        if engine not in installed or fmt not in arts:
            notes.append(f"{label}: {'engine not installed' if engine not in installed else 'no artifact'}")
            continue
        for t in threads:
            if engine == "mindir" and t != threads[0]:
                continue  # MindSpore fixes its CPU thread pool once per process
            r = runtimes.create_runner(engine, arts[fmt], threads=t, **opts)
            t0 = time.perf_counter()
            r.activate()
            r.infer(x)
            load = time.perf_counter() - t0
            agent.warm_up(lambda r=r: r.infer(x), {"warmup_window": 5, "warmup_max_s": 10})
            runners.append({"label": label, "engine": engine, "format": fmt, "threads": t,
                            "runner": r, "times": [], "load_s": load})
    print(f"{len(runners)} runners, {args.rounds} rounds x {args.per_round} runs, interleaved",
          file=sys.stderr)
    rng = random.Random(0)
    for rnd in range(args.rounds):
        order = runners[:]
        rng.shuffle(order)
        for item in order:
            per = 1 if item["engine"] == "mindir" else args.per_round
            for _ in range(per):
                item["runner"].infer(x)
                item["times"].append(item["runner"].last_inference_time * 1e3)
        print(f"round {rnd + 1}/{args.rounds}", file=sys.stderr)

    base = {it["threads"]: float(np.median(it["times"])) for it in runners
            if it["label"].startswith("ORT fp32 (optimised")}
    rows = []
    for it in runners:
        med = float(np.median(it["times"]))
        rows.append({"engine": it["label"], "threads": it["threads"],
                     "version": it["runner"].info().engine_version, "runs": len(it["times"]),
                     "median_ms": med, "p90_ms": float(np.percentile(it["times"], 90)),
                     "vs_ort_fp32": med / base[it["threads"]] if it["threads"] in base else None})
        it["runner"].deactivate()
    rows.sort(key=lambda r: (r["threads"], r["median_ms"]))
    fp = agent.machine_fingerprint()
    print(f"{MODEL}, 224 px, batch 1 -- {fp['cpu']}, {fp['logical_cores']} logical cores")
    print(format_table(rows, [("engine", "engine"), ("threads", "threads"), ("version", "version"),
                              ("runs", "runs"), ("median_ms", "median ms"), ("p90_ms", "p90 ms"),
                              ("vs_ort_fp32", "x ORT fp32")]))
    for n in notes:
        print(f"not run: {n}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": fp, "rows": rows, "not_run": notes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
