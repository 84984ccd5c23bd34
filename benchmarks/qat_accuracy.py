"""Post-training int8 vs QAT int8, each against the fp32 checkpoint on a labelled split.

For one fp32 checkpoint and the QAT checkpoint fine-tuned from it:

* exports ``onnx-int8`` from each (post-training: the accuracy-aware search;
  QAT: its learned ranges, no calibration);
* runs the fp32 checkpoint (MindSpore), both artifacts (ONNX Runtime) and the
  QAT checkpoint's fake-quant forward (MindSpore) on the split;
* prints, per int8 artifact vs fp32: top-1 agreement, relative logit error,
  expected flips, accuracy delta with its 95 % CI (paired Newcombe); and the
  QAT checkpoint vs its own artifact (what the ``qat`` parity profile judges).

    python benchmarks/qat_accuracy.py --fp32 run/best.ckpt --qat qat/best.ckpt \\
        --dataset /data/photos --split val --out /tmp/qat-bench [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

# the repository root first: benchmarks/runtimes.py would shadow the runtimes package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")


def logits(runner_engine: str, path, x: np.ndarray, batch: int = 32) -> np.ndarray:
    from runtimes import create_runner

    with create_runner(runner_engine, path) as r:
        fixed = r.input_spec().shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else batch
        return np.concatenate([r.infer(x[i:i + step]) for i in range(0, len(x), step)])


def compare(out: np.ndarray, ref: np.ndarray, labels) -> dict:
    from shufflenet import fidelity
    from toolchain.parity.statistics import accuracy_delta

    top_o, top_r = out.argmax(1), ref.argmax(1)
    fid = fidelity.compare(out, ref)          # no labels: every flip counts
    row = {"top1_agreement": fid["agreement"],
           "rel_logit_error": round(fid["logit_error"], 5),
           "max_abs_error": float(np.abs(out - ref).max()),
           "expected_flips_pp": round(100 * fid["expected_lost"], 3)}
    if labels is not None:
        ok_r, ok_o = top_r == labels, top_o == labels
        d = accuracy_delta(int((ok_r & ok_o).sum()), int((ok_r & ~ok_o).sum()),
                           int((~ok_r & ok_o).sum()), int((~ok_r & ~ok_o).sum()))
        row.update(acc_delta_pp=round(100 * d.delta, 2),
                   acc_delta_ci_pp=[round(100 * d.ci_low, 2), round(100 * d.ci_high, 2)],
                   lost=d.lost, gained=d.gained, reference_acc=d.reference_accuracy)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32", required=True)
    ap.add_argument("--qat", required=True)
    ap.add_argument("--dataset", required=True, help="demo or a dataset folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--out", required=True)
    ap.add_argument("--search-seconds", type=float, default=120.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from exporters.export import export_checkpoint
    from shufflenet.checkpoint import read_metadata
    from shufflenet.data.preprocess import EvalTransform
    from toolchain.parity.inputs import resolve_inputs

    out = Path(args.out)
    ptq = export_checkpoint(args.fp32, "onnx-int8", out / "ptq", search_seconds=args.search_seconds,
                            progress=False)[0]
    qat = export_checkpoint(args.qat, "onnx-int8", out / "qat", progress=False)[0]
    meta = read_metadata(args.fp32)
    size = int(meta["image_size"])
    inputs = resolve_inputs(dataset=args.dataset, split=args.split, image_size=size,
                            model_labels=meta.get("labels"), num_classes=meta.get("num_classes"))
    tf = EvalTransform(size, float(meta["crop_pct"]), tuple(meta["mean"]), tuple(meta["std"]),
                       meta["interpolation"])
    xs, ys = [], []
    for b in inputs.batches(tf, 64):
        xs.append(b.x if hasattr(b, "x") else b[0])
        ys.append(b.labels if hasattr(b, "labels") else b[1])
    x = np.concatenate(xs)
    labels = None if ys[0] is None else np.concatenate([np.asarray(y) for y in ys])
    ref = logits("mindspore", args.fp32, x)
    fake = logits("mindspore", args.qat, x)
    res = {"images": int(len(x)), "source": inputs.description if hasattr(inputs, "description")
           else args.dataset,
           "ptq_int8_vs_fp32": compare(logits("onnxruntime", ptq.path, x), ref, labels),
           "qat_int8_vs_fp32": compare(logits("onnxruntime", qat.path, x), ref, labels),
           "qat_fakequant_vs_fp32": compare(fake, ref, labels),
           "qat_int8_vs_qat_checkpoint": compare(logits("onnxruntime", qat.path, x), fake, labels)}
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{res['images']} images ({args.dataset}, split {args.split})")
    print("| pair | top-1 agreement | rel. logit error | expected flips pp | acc Δ pp [95 % CI] "
          "(lost/gained) |")
    print("|---|---|---|---|---|")
    for k in ("ptq_int8_vs_fp32", "qat_int8_vs_fp32", "qat_fakequant_vs_fp32",
              "qat_int8_vs_qat_checkpoint"):
        r = res[k]
        acc = (f"{r['acc_delta_pp']:+.2f} [{r['acc_delta_ci_pp'][0]:+.2f}, "
               f"{r['acc_delta_ci_pp'][1]:+.2f}] ({r['lost']}/{r['gained']})"
               if "acc_delta_pp" in r else "-")
        print(f"| {k} | {100 * r['top1_agreement']:.1f} % | {r['rel_logit_error']:.4f} | "
              f"{r['expected_flips_pp']:.2f} | {acc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
