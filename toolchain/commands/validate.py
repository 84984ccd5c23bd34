"""``shufflenet validate``: top-1 / top-5 / loss of a checkpoint on a dataset split."""
from __future__ import annotations

import click

from shufflenet.validate import validate as run_validate

from ..options import json_option, model_option, num_classes_option
from ..output import echo_json, echo_table


@click.command()
@model_option
@click.option("--ckpt_path", "--ckpt-path", "ckpt_path", default=None,
              help="Checkpoint to evaluate (its metadata gives model, classes, preprocessing).")
@click.option("--pretrained", is_flag=True, default=False,
              help="Evaluate the published MindCV weights instead.")
@click.option("--dataset", default="imagenet", show_default=True,
              help="imagenet (any class-per-folder tree), cifar10 or demo.")
@click.option("--data_dir", "--data-dir", "data_dir", default="./", show_default=True,
              help="Dataset root holding the split folder.")
@click.option("--val_split", "--val-split", "val_split", default="val", show_default=True,
              help="Split to evaluate.")
@click.option("--batch_size", "--batch-size", "batch_size", type=click.IntRange(1), default=64,
              show_default=True)
@num_classes_option
@click.option("--image_resize", "--image-resize", "image_size", type=click.IntRange(32),
              default=None, help="Crop size (default: from the checkpoint or the model).")
@click.option("--crop_pct", "--crop-pct", "crop_pct", type=click.FloatRange(0, 1, min_open=True),
              default=None, help="Resize to size/crop_pct before the centre crop.")
@click.option("--num_samples", "--num-samples", "num_samples", type=click.IntRange(1),
              default=None, help="Evaluate only N evenly spaced images.")
@click.option("--device_target", "--device-target", "device_target", default="auto",
              show_default=True, help="auto, CPU, GPU or Ascend.")
@click.option("--mode", type=click.Choice(["0", "1"]), default="0", show_default=True,
              help="0 graph, 1 PyNative.")
@click.option("--num_parallel_workers", "--num-parallel-workers", "workers",
              type=click.IntRange(1), default=2, show_default=True)
@json_option
def validate(model, ckpt_path, pretrained, dataset, data_dir, val_split, batch_size, num_classes,
             image_size, crop_pct, num_samples, device_target, mode, workers, as_json):
    """Evaluate a checkpoint: top-1, top-5 and cross-entropy loss.

    \b
    shufflenet validate --ckpt_path runs/demo/shufflenet_v2_x0_5_best.ckpt --dataset demo
    shufflenet validate --model shufflenet_v2_x1_0 --pretrained --data_dir /data/imagenet
    """
    if ckpt_path and pretrained:
        raise click.UsageError("pass --ckpt_path or --pretrained, not both")
    res = run_validate(model, ckpt_path=ckpt_path, pretrained=pretrained, dataset=dataset,
                       data_dir=data_dir, val_split=val_split, batch_size=batch_size,
                       num_classes=num_classes, image_size=image_size, crop_pct=crop_pct,
                       device_target=device_target, mode=int(mode),
                       num_parallel_workers=workers, num_samples=num_samples)
    if res.get("skipped_images"):
        # the loader put a neighbouring image in each one's place: the top-1 would count that
        # neighbour twice and claim images it never read
        raise click.ClickException(
            f"{res['skipped_images']} unreadable image(s) in the {val_split} split (the first are "
            f"named in the warning above): fix or remove them; top-1 would count a neighbouring "
            f"image in their place")
    if as_json:
        echo_json(res)
        return
    # --json keeps validate()'s fractions; the table shows percent and says so
    row = {**res, "top1_pct": round(100.0 * res["top1"], 2), "top5_pct": round(100.0 * res["top5"], 2)}
    echo_table([row], [("model", "model"), ("split", "split"), ("num_images", "images"),
                       ("top1_pct", "top-1 %"), ("top5_pct", "top-5 %"), ("loss", "loss")])
    pre = res["preprocessing"]
    # the artifact's contract, so a reader knows this is the accuracy an export of it gets
    click.echo(f"preprocessing: {pre['image_size']} px centre crop of a {pre['interpolation']} "
               f"resize (crop_pct {pre['crop_pct']}), as the checkpoint's artifacts; images "
               f"fingerprint {res['images_fingerprint'][:12]}")
