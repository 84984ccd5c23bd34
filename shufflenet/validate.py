"""Top-1 / top-5 / loss of a model on a dataset split (``shufflenet validate``).

>>> validate("shufflenet_v2_x0_5", ckpt_path="runs/demo/shufflenet_v2_x0_5_best.ckpt",
...          dataset="demo")                                       # doctest: +SKIP
{'top1': 0.97, 'top5': 1.0, 'loss': 0.12, 'num_images': 360, ...}
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .checkpoint import read_metadata
from .data.folder import image_set_of
from .data.pipeline import eval_loader, open_source
from .data.preprocess import EvalTransform
from .device import init_context
from .errors import ConfigError
from .fidelity import compare

log = logging.getLogger(__name__)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def evaluate(net, loader, progress: bool = False, desc: str = "val", reference=None) -> dict:
    """Run ``net`` (in eval mode) over ``loader``; returns top1, top5, loss, num_images.

    ``reference``: another network run on the same images (QAT's fp32 teacher), or its
    logits on ``loader`` (:func:`predict`; a frozen teacher's do not change between epochs);
    adds ``agreement``, ``logit_error`` and ``expected_lost`` of ``net``'s logits against its
    (:func:`shufflenet.fidelity.compare` with the labels: the share of the images the
    reference gets right that ``net`` is expected to lose, as the int8 search ranks its
    trials). The logits are kept as float32 until the end (ImageNet val: 2 x 200 MB)."""
    import mindspore as ms
    from tqdm import tqdm

    net.set_train(False)
    given = isinstance(reference, np.ndarray)
    if reference is not None and not given:
        reference.set_train(False)
    correct1 = correct5 = 0
    loss_sum, n = 0.0, 0
    outs, refs, labs = [], [], []
    start = time.perf_counter()
    with tqdm(total=loader.steps, desc=desc, unit="batch", leave=False,
              disable=not progress) as bar:
        for images, labels in loader:
            raw = net(ms.Tensor(images)).asnumpy()
            logits = raw.astype(np.float64)
            labels = labels.astype(np.int64)
            if reference is not None:
                outs.append(raw.astype(np.float32))
                refs.append(reference[n:n + len(labels)] if given else
                            reference(ms.Tensor(images)).asnumpy().astype(np.float32))
                labs.append(labels)
            k = min(5, logits.shape[1])
            top = np.argsort(-logits, axis=1)[:, :k]
            correct1 += int((top[:, 0] == labels).sum())
            correct5 += int((top == labels[:, None]).any(axis=1).sum())
            loss_sum += float(-_log_softmax(logits)[np.arange(len(labels)), labels].sum())
            n += len(labels)
            bar.update(1)
    if loader.skipped.count:
        log.warning("%d unreadable images were replaced by their neighbours (first: %s)",
                    loader.skipped.count, "; ".join(loader.skipped.first))
    out = {"top1": correct1 / max(n, 1), "top5": correct5 / max(n, 1),
           "loss": loss_sum / max(n, 1), "num_images": n,
           "skipped_images": loader.skipped.count,
           "seconds": round(time.perf_counter() - start, 3)}
    if given and len(reference) != n:
        raise ValueError(f"{len(reference)} reference logits for {n} images")
    if refs:
        fid = compare(np.concatenate(outs), np.concatenate(refs), np.concatenate(labs))
        out.update({k: fid[k] for k in ("agreement", "logit_error", "expected_lost")})
    return out


def predict(net, loader, progress: bool = False, desc: str = "logits",
            keep_inputs: bool = False):
    """``net``'s float32 logits (eval mode) on every image of ``loader``, in its order;
    ``keep_inputs``: ``(logits, the images as fed)``.

    A short last batch is padded to the others' size (graph mode compiles once per shape)."""
    from tqdm import tqdm

    net.set_train(False)
    outs, inputs, full = [], [], None
    with tqdm(total=loader.steps, desc=desc, unit="batch", leave=False,
              disable=not progress) as bar:
        for images, _ in loader:
            if keep_inputs:
                inputs.append(np.array(images, copy=True))
            n = len(images)
            full = full or n
            if n < full:
                images = np.concatenate([images, np.repeat(images[-1:], full - n, axis=0)])
            outs.append(net(loader.to_network(images)).asnumpy()[:n].astype(np.float32))
            bar.update(1)
    return (np.concatenate(outs), np.concatenate(inputs)) if keep_inputs else np.concatenate(outs)


def eval_inputs(meta: dict, model: str, dataset: str = "imagenet", data_dir=None,
                val_split: str = "val", image_size: int | None = None,
                crop_pct: float | None = None, num_samples: int | None = None):
    """``(source, transform)``: the images validate reads and the preprocessing it runs on them.

    The transform is the contract the checkpoint's artifacts carry (its
    metadata over the model's config; ``image_size`` / ``crop_pct`` override
    both); class folders are read for the checkpoint's labels.
    """
    from .models import get_model_config

    base = get_model_config(model).to_dict()
    base.update({k: v for k, v in meta.items() if k in ("image_size", "crop_pct", "mean", "std",
                                                         "interpolation")})
    if image_size:
        base["image_size"] = image_size
    if crop_pct:
        base["crop_pct"] = crop_pct
    transform = EvalTransform.from_metadata(base)
    data_cfg = {"dataset": dataset, "data_dir": data_dir, "image_resize": transform.image_size,
                "num_samples": num_samples, "dataset_download": False}
    return open_source(data_cfg, val_split, classes=meta.get("labels")), transform


def validate(model: str | None = None, ckpt_path: str | None = None, pretrained: bool = False,
             dataset: str = "imagenet", data_dir: str = "./", val_split: str = "val",
             batch_size: int = 64, num_classes: int | None = None, image_size: int | None = None,
             crop_pct: float | None = None, device_target: str | None = None, mode: int = 0,
             num_parallel_workers: int = 2, num_samples: int | None = None,
             progress: bool = True) -> dict:
    """Evaluate a checkpoint (or the published weights) on a split.

    Preprocessing is the contract the checkpoint's exports carry: its
    metadata (image size, crop_pct, mean/std, interpolation), falling back to
    the model's own config, run by :class:`EvalTransform` -- the exact tensors
    parity, calibration and every device are fed, so this top-1 is the
    deployed top-1. The result records it (``preprocessing``) and the image
    set's fingerprint (``images_fingerprint``, the number parity shows for the
    same images). The class count comes from the metadata, then
    ``num_classes``, then the classifier's shape
    (:func:`shufflenet.models.load_eval_network`, the rule every reader shares);
    class folders are labelled by :func:`shufflenet.data.folder.class_folder_labels`.
    """
    from .models import create_model, get_model_config

    if not ckpt_path and not pretrained:
        raise ConfigError("validate needs --ckpt_path PATH or --pretrained")
    meta = read_metadata(ckpt_path) if ckpt_path else {}
    model = model or meta.get("model")
    if not model:
        raise ConfigError(f"{ckpt_path} does not name its model; pass --model")
    source, transform = eval_inputs(meta, model, dataset, data_dir, val_split, image_size,
                                    crop_pct, num_samples)
    target = init_context(device_target, mode)
    if ckpt_path:
        # the one checkpoint -> eval network rule (exporters, runners and parity use it too)
        from .models import load_eval_network  # MindSpore: lazy

        ev = load_eval_network(ckpt_path, model=model, num_classes=num_classes)
        net, n_cls = ev.net, ev.num_classes
    else:
        n_cls = num_classes or get_model_config(model).num_classes
        net = create_model(model, num_classes=n_cls, pretrained=True)
    if source.targets.max() >= n_cls:
        raise ConfigError(f"dataset has label {int(source.targets.max())} but the model has "
                          f"{n_cls} classes; pass the checkpoint trained on this dataset")
    loader = eval_loader(source, {"batch_size": batch_size,
                                  "num_parallel_workers": num_parallel_workers},
                         batch_size, transform)
    result = evaluate(net, loader, progress=progress)
    result.update({"model": model, "checkpoint": str(ckpt_path) if ckpt_path else "pretrained",
                   "dataset": dataset, "split": val_split, "device_target": target,
                   "image_size": transform.image_size, "crop_pct": transform.crop_pct,
                   "preprocessing": transform.to_dict(),
                   "images_fingerprint": image_set_of(source),
                   # the rate a constant guess scores: what the pipeline's chance gate beats
                   "majority_class_images": int(np.bincount(np.asarray(source.targets)).max())
                   if len(source.targets) else 0})
    return result
