"""Training-loader throughput: ours (MindSpore C++ ops) vs MindCV 0.3.0, interleaved.

Both sides read the same JPEG folder (real photos shipped by scikit-learn /
scikit-image, cropped and resized to ImageNet-like 500x375), with the same
recipe (``shufflenet_v2_1.0_ascend``: 224 px RandomResizedCrop, hflip 0.5,
colour jitter 0.4, normalise, random erasing 0.5), batch 64, drop_remainder,
shuffled, at 1 and 2 workers. Each round runs every configuration for one
full epoch, in a new random order per round, so load swings on a shared
machine hit all of them. Prints the median images/s and the ratios.

"ours" is what the trainer consumes: uint8 NHWC batches from the C++ ops,
normalised and transposed by a compiled MindSpore function (counted here,
as every side's batch is turned into the network's input Tensor).
``--extras`` adds the variants measured to get there: ours with float32
NCHW output normalised in the loader (MindCV's output format), and the
in-graph normalisation's own cost.

    pip install mindcv==0.3.0      # benchmark-only dependency (extra `bench`)
    python benchmarks/loader_throughput.py [--rounds 3] [--per-class 100] [--extras] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GLOG_v", "3")

RECIPE = "shufflenet_v2_1.0_ascend"


def _cfg(root, workers, batch):
    from shufflenet.config import make_config

    return make_config(RECIPE, {"dataset": "imagenet", "data_dir": str(root),
                                "num_parallel_workers": workers, "batch_size": batch})


def ours(root, workers, batch, epoch):
    """What the trainer uses: uint8 NHWC batches, normalised by a compiled MindSpore function."""
    from shufflenet.data.pipeline import open_source, train_loader

    cfg = _cfg(root, workers, batch)
    return train_loader(open_source(cfg, "train"), cfg, epoch, uint8=True)


def ours_float(root, workers, batch, epoch):
    """Ours with MindCV's output: float32 NCHW batches normalised in the loader."""
    from shufflenet.data.pipeline import open_source, train_loader

    cfg = _cfg(root, workers, batch)
    return train_loader(open_source(cfg, "train"), cfg, epoch)


def mindcv(root, workers, batch, epoch):
    from mindcv.data import create_dataset, create_loader, create_transforms

    cfg = _cfg(root, workers, batch)
    data = create_dataset(name="", root=str(root), split="train", shuffle=True,
                          num_parallel_workers=workers)
    transform = create_transforms(
        dataset_name="imagenet", image_resize=cfg["image_resize"], is_training=True,
        scale=tuple(cfg["scale"]), ratio=tuple(cfg["ratio"]), hflip=cfg["hflip"],
        vflip=cfg["vflip"], color_jitter=cfg["color_jitter"], interpolation=cfg["interpolation"],
        mean=list(cfg["mean"]), std=list(cfg["std"]), re_prob=cfg["re_prob"],
        re_scale=tuple(cfg["re_scale"]), re_ratio=tuple(cfg["re_ratio"]),
        re_value=cfg["re_value"] or 0, re_max_attempts=cfg["re_max_attempts"])
    loader = create_loader(data, batch_size=batch, drop_remainder=True, is_training=True,
                           transform=transform, num_parallel_workers=workers)
    return _Iter(loader)


class _Iter:
    def __init__(self, dataset):
        self.dataset = dataset

    def __iter__(self):
        return self.dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)


def one_epoch(make, root, workers, batch, epoch) -> tuple[float, float, int, tuple]:
    """(images/s wall-clock, CPU ms per image over all threads, images, batch shape).

    Every batch is turned into the network's input Tensor as the trainer does
    (``loader.to_network``; ``Tensor(images)`` for MindCV).
    """
    import mindspore as ms

    start, cpu = time.perf_counter(), time.process_time()
    n, shape = 0, None
    loader = make(root, workers, batch, epoch)
    to_network = getattr(loader, "to_network", ms.Tensor)
    for images, labels in loader:
        x = to_network(images)
        n += len(labels)
        shape = (tuple(x.shape), str(x.dtype))
    _synchronize()
    return (n / (time.perf_counter() - start), (time.process_time() - cpu) * 1e3 / n, n,
            shape)


def _synchronize() -> None:
    try:
        from mindspore import runtime

        runtime.synchronize()
    except (ImportError, AttributeError):  # older MindSpore: CPU kernels run synchronously
        pass


def graph_normalise_cost(batch: int, size: int, reps: int = 10) -> float:
    """Seconds per image to cast + normalise + NHWC->NCHW a uint8 batch in MindSpore here."""
    import mindspore as ms
    from mindspore import ops

    from shufflenet.artifact import IMAGENET_MEAN, IMAGENET_STD

    mean = ms.Tensor(np.array(IMAGENET_MEAN, np.float32))
    inv_std = ms.Tensor(1.0 / np.array(IMAGENET_STD, np.float32))

    @ms.jit
    def normalise(x):
        return ops.transpose((ops.cast(x, ms.float32) - mean) * inv_std, (0, 3, 1, 2))

    x = ms.Tensor(np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), np.uint8))
    normalise(x).asnumpy()
    start = time.perf_counter()
    for _ in range(reps):
        normalise(x).asnumpy()
    return (time.perf_counter() - start) / (reps * batch)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="JPEG folder to use/create (default: a temp folder)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--workers", default="1,2")
    p.add_argument("--extras", action="store_true", help="also measure uint8 NHWC batches")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from shufflenet.data.photo_folder import write_photo_folder

    root = Path(args.data or Path(tempfile.gettempdir()) / "shufflenet-loader-bench")
    write_photo_folder(root, classes=args.classes, per_class=args.per_class)
    workers = [int(w) for w in args.workers.split(",")]
    sides = {"ours": ours, "mindcv": mindcv}
    if args.extras:
        sides["ours_float"] = ours_float
    configs = [(name, w) for name in sides for w in workers]
    rates: dict = {c: [] for c in configs}
    cpu_ms: dict = {c: [] for c in configs}
    shapes: dict = {}
    rng = np.random.default_rng(0)
    for r in range(args.rounds):
        for i in rng.permutation(len(configs)):
            name, w = configs[i]
            rate, ms, n, shape = one_epoch(sides[name], root, w, args.batch, epoch=r)
            rates[(name, w)].append(rate)
            cpu_ms[(name, w)].append(ms)
            shapes[name] = shape
            print(f"round {r + 1}: {name:17s} {w} worker(s) {rate:7.1f} img/s "
                  f"{ms:6.2f} CPU ms/img ({n} images)", file=sys.stderr)
    med = {c: statistics.median(v) for c, v in rates.items()}
    med_cpu = {c: statistics.median(v) for c, v in cpu_ms.items()}
    result = {"images": args.classes * args.per_class, "batch": args.batch, "recipe": RECIPE,
              "rounds": args.rounds, "cpu_count": os.cpu_count(),
              "img_per_s": {f"{n}@{w}": round(v, 1) for (n, w), v in med.items()},
              "cpu_ms_per_image": {f"{n}@{w}": round(v, 3) for (n, w), v in med_cpu.items()},
              "load_average": list(os.getloadavg()),
              "batch_shape": {n: list(s[0]) + [s[1]] for n, s in shapes.items()}, "ratios": {}}
    for w in workers:
        result["ratios"][f"ours/mindcv@{w}"] = round(med[("ours", w)] / med[("mindcv", w)], 2)
    if len(workers) > 1:
        lo, hi = workers[0], workers[-1]
        for name in sides:
            result["ratios"][f"{name}@{hi}/{name}@{lo}"] = round(med[(name, hi)] / med[(name, lo)],
                                                                2)
    if args.extras:
        cost = graph_normalise_cost(args.batch, 224)
        result["graph_normalise_ms_per_image"] = round(cost * 1e3, 3)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['images']} JPEGs (500x375), {RECIPE}, batch {args.batch}, "
          f"median of {args.rounds} interleaved epochs, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"{'loader (img/s | CPU ms/img)':28s} "
          + " ".join(f"{f'{w} worker(s)':>18s}" for w in workers))
    for name in sides:
        print(f"{name:28s} " + " ".join(f"{med[(name, w)]:9.1f} | {med_cpu[(name, w)]:6.2f}"
                                         for w in workers))
    for k, v in result["ratios"].items():
        print(f"{k:40s} {v:.2f}x")
    if args.extras:
        print(f"in-graph normalise on this CPU: {result['graph_normalise_ms_per_image']} ms/image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
