"""Parity of edge artifacts on the emulated ARM64 device, per CPU model: the README's table.

Runs each artifact (ONNX fp32/int8 on ONNX Runtime, MNN high/low, ncnn
fp32/fp16) on ``emu:arm64`` with each CPU model, against the checkpoint in
MindSpore on this machine, on the same labelled images, and prints a Markdown
table. Needs ``shufflenet device setup arm64``. Numerics only: emulation
says nothing about speed.

    python benchmarks/device_parity.py CKPT ARTIFACT_DIR [--dataset demo] [--samples 32]
        [--cpu cortex-a72 --cpu cortex-a76]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# this folder holds a runtimes.py: the repository's package must come first
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (format, engine, options, parity profile)
CASES = [("onnx", "onnxruntime", {}, None), ("onnx-int8", "onnxruntime", {}, None),
         ("mnn", "mnn", {"precision": "high"}, None), ("mnn", "mnn", {"precision": "low"}, "fp16"),
         ("ncnn", "ncnn", {"fp16": False}, None), ("ncnn", "ncnn", {"fp16": True}, "fp16")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("artifact_dir")
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--cpu", action="append", default=None)
    args = ap.parse_args(argv)
    from runtimes.devices import device_for
    from shufflenet.artifact import resolve_artifact
    from toolchain.parity import run_parity

    by_format = {}
    for f in sorted(Path(args.artifact_dir).iterdir()):
        if f.name.endswith((".onnx", ".mnn", ".param")):
            by_format[resolve_artifact(f).format] = f
    rows = []
    for cpu in args.cpu or ["cortex-a72", "cortex-a76"]:
        device = device_for("emu:arm64", cpu=cpu)
        for fmt, engine, options, profile in CASES:
            if fmt not in by_format:
                continue
            t0 = time.perf_counter()
            report = run_parity(args.checkpoint, [by_format[fmt]], engines=[engine], device=device,
                                engine_options={engine: options}, dataset=args.dataset,
                                samples=args.samples, profile=profile, progress=False,
                                localize=False)
            p = report.pairs[0]
            m = p.metrics or {}
            acc = m.get("accuracy") or {}
            opt = ", ".join(f"{k}={v}" for k, v in options.items()) or "-"
            rows.append((Path(p.artifact).name, f"{engine} {p.engine_version}", opt, p.ran_on,
                         m.get("samples"), m.get("max_abs_error"), m.get("max_rel_error"),
                         m.get("min_cosine"), m.get("top1_agreement"),
                         f"{acc['delta'] * 100:+.1f}" if "delta" in acc else "-", p.status,
                         time.perf_counter() - t0))
            print(f"{rows[-1]}", file=sys.stderr, flush=True)
    print("| artifact | engine | options | ran on | n | max abs err | max rel err | min cosine "
          "| top-1 agree | acc. delta pp | verdict | s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [(f"{c:.6f}" if i == 7 else f"{c:.3g}") if isinstance(c, float) else str(c)
                 for i, c in enumerate(r)]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
