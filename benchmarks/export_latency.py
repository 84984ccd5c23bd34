"""ONNX Runtime CPU latency of our exports vs MindSpore's naive ONNX export.

Exports one checkpoint (default: a seeded random ``shufflenet_v2_x1_0``, 1000
classes, 224 px) to ``onnx-raw`` (the naive ``mindspore.onnx.export`` graph,
same weights), ``onnx`` (optimised fp32) and ``onnx-int8`` twice: *int8-all*
(every layer int8, MinMax: the export with an unlimited accuracy budget) and
*mixed* (the default accuracy-aware export: layers kept in fp32 until the
held-out drop is within ``--max-accuracy-drop``), and *qat* (``onnx-int8``
exported from a QAT checkpoint with its learned ranges: ``--qat-ckpt``, else
the QAT start checkpoint of the same weights -- the same graph, so the same
speed), then times batch-1
inference with ORT_ENABLE_ALL at 1 and 2 threads, all sessions interleaved
in one run (this machine's speed swings minute to minute, so only
interleaved numbers compare), the order within a round balanced so that no
model always runs right after the same one. Prints median / p90,
the ratios vs naive, int8 top-1 agreement with fp32 on real photos (views
of the photos shipped with scikit-learn/-image, disjoint from the
calibration views), and the compute floor 2 x MACs / peak FLOP/s.

    python benchmarks/export_latency.py [--ckpt CKPT] [--eval-set photos|demo] [--rounds 300]
                                        [--max-accuracy-drop PP] [--search-seconds S]
                                        [--qat-ckpt QAT.ckpt] [--json out.json] [--keep]
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


def photo_views(transform, count: int, seed: int) -> np.ndarray:
    """``count`` random crops/flips of the shipped real photos, preprocessed."""
    from PIL import ImageOps

    from shufflenet.data.preprocess import sample_photos

    rng = np.random.RandomState(seed)
    photos = [img for _, img in sample_photos()]
    out = []
    for i in range(count):
        img = photos[i % len(photos)]
        w, h = img.size
        scale = rng.uniform(0.4, 1.0)
        cw, ch = int(w * scale), int(h * scale)
        left, top = rng.randint(0, w - cw + 1), rng.randint(0, h - ch + 1)
        view = img.crop((left, top, left + cw, top + ch))
        if rng.rand() < 0.5:
            view = ImageOps.mirror(view)
        out.append(transform(view))
    return np.stack(out).astype(np.float32)


def peak_flops_per_core() -> tuple[float, str]:
    """Peak fp32 FLOP/s of one core from /proc/cpuinfo (an upper bound: 2 FMA pipes)."""
    mhz, flags = 0.0, ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":")[1])
            elif line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    per_cycle = 2 * 2 * lanes  # 2 FMA pipes x (mul + add) x fp32 lanes
    ghz = (mhz or 2000.0) / 1000
    return ghz * 1e9 * per_cycle, f"{ghz:.2f} GHz x {per_cycle} FLOP/cycle ({'avx512' if lanes == 16 else 'avx2' if lanes == 8 else 'sse'}, 2 FMA pipes)"


def make_checkpoint(path: Path, model: str, size: int) -> Path:
    import mindspore as ms

    from shufflenet.checkpoint import save_checkpoint
    from shufflenet.models import create_model

    ms.set_seed(0)
    net = create_model(model, num_classes=1000)
    return save_checkpoint(net, path, metadata={"model": model, "num_classes": 1000,
                                                "image_size": size})


def balanced_orders(n: int) -> list[list[int]]:
    """Run orders for ``n`` models in which each model directly follows every
    other one equally often (a Williams design: ``n`` rows, ``2n`` for odd ``n``).

    A fixed round-robin order taxes whoever runs right after the big fp32
    model: two byte-identical int8 files timed 0.77x and 0.74x of fp32 by
    position alone (x1_0, 224 px, 1 thread).

    >>> balanced_orders(4)
    [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    """
    first, lo, hi = [0], 1, n - 1
    while lo <= hi:
        first.append(lo)
        lo += 1
        if lo <= hi:
            first.append(hi)
            hi -= 1
    rows = [[(j + i) % n for j in first] for i in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def time_sessions(paths: dict, x: np.ndarray, threads_list, rounds: int, warmup: int) -> dict:
    """Median/p90 ms per (model, threads), models interleaved round by round
    in :func:`balanced_orders`.

    Each thread count is its own pass: a 2-thread session's worker keeps
    spinning after a run and steals a core from whatever runs next, which
    made 1-thread numbers depend on the interleaving (seen: naive 5.1 ms ->
    9.4 ms). Within a pass every model sees the same machine state.
    """
    import onnxruntime as ort

    out = {}
    for t in threads_list:
        sessions = {}
        for name, path in paths.items():
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = t
            opts.inter_op_num_threads = 1
            s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            sessions[(name, t)] = (s, {s.get_inputs()[0].name: x})
        times = {k: [] for k in sessions}
        keys = list(sessions)
        orders = balanced_orders(len(keys))
        for r in range(warmup + rounds):
            for j in orders[r % len(orders)]:       # interleaved: one run of each per round
                k = keys[j]
                s, feed = sessions[k]
                t0 = time.perf_counter()
                s.run(None, feed)
                if r >= warmup:
                    times[k].append(time.perf_counter() - t0)
        out.update({k: (float(np.median(v)) * 1e3, float(np.percentile(v, 90)) * 1e3)
                    for k, v in times.items()})
        del sessions
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ckpt", help="checkpoint to export (default: seeded random x1_0)")
    ap.add_argument("--model", default="shufflenet_v2_x1_0")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--calib-views", type=int, default=96,
                    help="calibration views; a third is held out for the int8 accuracy search")
    ap.add_argument("--max-accuracy-drop", type=float, default=1.0, metavar="PP",
                    help="the mixed artifact's budget (percentage points, held-out views)")
    ap.add_argument("--search-seconds", type=float, default=300.0)
    ap.add_argument("--eval-views", type=int, default=200)
    ap.add_argument("--eval-set", choices=["photos", "demo"], default="photos",
                    help="images for int8 calibration and agreement: random views of the "
                         "shipped photos (calibration and evaluation views disjoint), or the "
                         "demo digits (calibrate on train, evaluate on all 360 val images)")
    ap.add_argument("--calib-dir", help="a labelled DIR/<class>/* tree to calibrate on instead "
                                        "(a stratified third is held out for the search)")
    ap.add_argument("--eval-dir", help="a labelled DIR/<class>/* tree for agreement and accuracy "
                                       "(e.g. the val split of --calib-dir's dataset)")
    ap.add_argument("--qat-ckpt", help="a QAT checkpoint fine-tuned from --ckpt (default: the "
                                       "QAT start checkpoint of --ckpt: same graph, same speed)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the exported files (printed)")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    from exporters import export_checkpoint
    from exporters.source import load_source
    from shufflenet.data.preprocess import EvalTransform
    from shufflenet.macs import count_macs

    work = Path(tempfile.mkdtemp(prefix="export_latency."))
    ckpt = Path(args.ckpt) if args.ckpt else make_checkpoint(work / "bench.ckpt", args.model, args.size)
    src = load_source(ckpt, image_size=args.size)
    transform = EvalTransform(args.size, src.preprocess["crop_pct"], tuple(src.preprocess["mean"]),
                              tuple(src.preprocess["std"]), src.preprocess["interpolation"])
    calib = {"dataset": "demo:train"}
    if args.calib_dir:
        calib = {"calib_dir": args.calib_dir}
    elif args.eval_set == "photos":
        calib_dir = work / "calib"
        calib_dir.mkdir()
        from PIL import (
            Image,  # calibration views as image files, as a user would pass --calib
        )

        for i, v in enumerate(photo_views(lambda im: np.asarray(im.resize((args.size * 8 // 7,) * 2)),
                                          args.calib_views, seed=1)):
            Image.fromarray(v.astype(np.uint8)).save(calib_dir / f"{i:03d}.png")
        calib = {"calib_dir": calib_dir}
    t0 = time.perf_counter()
    results = {r.format: r for r in export_checkpoint(
        ckpt, "onnx-raw,onnx,onnx-int8", work / "out", batch="dynamic",
        calib_samples=args.calib_views, image_size=args.size,
        max_accuracy_drop_pp=args.max_accuracy_drop, search_seconds=args.search_seconds, **calib)}
    export_s = time.perf_counter() - t0
    # int8-all: the same export with a budget any int8 meets -- MinMax, every layer int8
    (every,) = export_checkpoint(ckpt, "onnx-int8", work / "all", batch="dynamic",
                                 calib_samples=args.calib_views, image_size=args.size,
                                 max_accuracy_drop_pp=99.0, **calib)
    qat_ckpt = args.qat_ckpt
    if not qat_ckpt:
        from exporters.qat_start import write_qat_start

        qat_ckpt = work / "qat_start.ckpt"
        write_qat_start(ckpt, qat_ckpt, calib_samples=args.calib_views, progress=False)
    (qat,) = export_checkpoint(qat_ckpt, "onnx-int8", work / "qat", batch="dynamic",
                               image_size=args.size)
    paths = {"naive": results["onnx-raw"].path, "onnx": results["onnx"].path,
             "int8-all": every.path, "mixed": results["onnx-int8"].path, "qat": qat.path}
    search = results["onnx-int8"].details["int8"]     # the artifact's choices + this run's timings

    # int8 vs fp32 top-1 agreement on photo views not used for calibration
    eval_labels = None
    if args.eval_dir:
        from shufflenet.data.folder import FolderSource

        val = FolderSource(args.eval_dir)
        views = np.stack([transform(val.load(i)) for i in range(len(val))]).astype(np.float32)
        eval_labels = np.asarray(val.targets)
    elif args.eval_set == "photos":
        views = photo_views(transform, args.eval_views, seed=2)
    else:
        from shufflenet.data.demo import demo_arrays

        views = np.stack([transform(im) for im in demo_arrays("val", 32)[0]]).astype(np.float32)
    fp32 = ort.InferenceSession(paths["onnx"], providers=["CPUExecutionProvider"])
    a = fp32.run(None, {"input": views})[0].argmax(1)
    agreements, accuracies = {}, {}
    if eval_labels is not None:
        accuracies["fp32"] = float((a == eval_labels).mean())
    for name in ("int8-all", "mixed", "qat"):
        sess = ort.InferenceSession(paths[name], providers=["CPUExecutionProvider"])
        top1 = sess.run(None, {"input": views})[0].argmax(1)
        agreements[name] = float((top1 == a).mean())
        if eval_labels is not None:
            accuracies[name] = float((top1 == eval_labels).mean())
    agreement = agreements["mixed"]

    x = views[:1]
    threads = [1, 2]
    lat = time_sessions(paths, x, threads, args.rounds, args.warmup)
    macs = count_macs(src.net, (args.size, args.size))
    peak, peak_desc = peak_flops_per_core()

    print(f"model {src.model_name}, {src.num_classes} classes, {args.size}x{args.size}, batch 1, "
          f"onnxruntime {ort.__version__}, ORT_ENABLE_ALL, {args.rounds} interleaved rounds "
          f"(export took {export_s:.1f} s)")
    rows = []
    print(f"{'model':<10} {'threads':>7} {'median ms':>10} {'p90 ms':>8} {'vs naive':>9} "
          f"{'vs fp32':>8} {'floor ms':>9}")
    for t in threads:
        base = lat[("naive", t)][0]
        fp32_ms = lat[("onnx", t)][0]
        floor_ms = 2 * macs / (peak * t) * 1e3
        for name in paths:
            med, p90 = lat[(name, t)]
            rows.append({"model": name, "threads": t, "median_ms": med, "p90_ms": p90,
                         "ratio_vs_naive": med / base, "ratio_vs_fp32": med / fp32_ms,
                         "floor_ms": floor_ms})
            print(f"{name:<10} {t:>7} {med:>10.3f} {p90:>8.3f} {med / base:>8.2f}x "
                  f"{med / fp32_ms:>7.2f}x {floor_ms:>9.3f}")
    print(f"mixed: {search['method']}{'' if search['per_channel'] else ' per-tensor'}, "
          f"{len(search['fp32_layers'])} layer(s) in fp32 ({', '.join(search['fp32_layers']) or '-'}); "
          f"held-out {search['metric']} {search['drop_pp']} pp vs budget {search['max_drop_pp']} pp "
          f"({'met' if search['budget_met'] else 'MISSED' if search['budget_met'] is False else 'unmeasured'}, "
          f"{search['stopped']}, {search['search_seconds']} s); int8-all agreement "
          f"{agreements['int8-all']:.1%}, mixed {agreements['mixed']:.1%}, "
          f"qat {agreements['qat']:.1%}{'' if args.qat_ckpt else ' (QAT start: not fine-tuned)'}")
    top2 = np.sort(fp32.run(None, {"input": views})[0], axis=1)[:, -2:]
    margin = float(np.median(top2[:, 1] - top2[:, 0]) / (np.abs(top2[:, 1]).mean() + 1e-30))
    if accuracies:
        print("top-1 accuracy on " + args.eval_dir + ": " +
              ", ".join(f"{k} {v:.1%}" for k, v in accuracies.items()))
    print(f"int8 top-1 agreement with fp32 on {len(views)} real images "
          f"({args.eval_dir or args.eval_set}): "
          f"{agreement:.1%} (median fp32 top-1 margin {margin:.2g} of the top logit"
          f"{'; an untrained net: agreement is noise' if not args.ckpt else ''})")
    print(f"compute floor: 2 x {macs / 1e6:.1f} MMACs / peak ({peak_desc} per thread)")
    print("targets: onnx <= 0.90x naive; int8-all <= 0.60x naive; mixed <= 0.70x fp32 "
          "within its accuracy budget; qat <= 0.70x fp32")
    if args.keep:
        print(f"artifacts kept in {work / 'out'}")
    else:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": src.model_name, "size": args.size, "rows": rows, "agreement": agreement,
            "agreements": agreements, "accuracies": accuracies, "int8_search": {k: v for k, v in search.items() if k != "trials"},
            "margin": margin, "eval_set": args.eval_set, "macs": macs,
            "peak_flops_per_thread": peak, "ckpt": str(args.ckpt or "random")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
