"""``shufflenet models``: the zoo at a glance."""
from __future__ import annotations

import click

from ..options import json_option
from ..output import echo_json, echo_table


@click.command()
@click.option("--image-size", "--image_size", "image_size", type=click.IntRange(32, 4096),
              default=None, help="Count MACs at this resolution (default: each model's own).")
@json_option
def models(image_size, as_json):
    """List the registered models: parameters, MACs, input size, reference accuracy."""
    from shufflenet.models.summary import describe_models

    rows = describe_models(image_size=image_size)
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, [("name", "model"), ("params", "params (all)"),
                      ("trainable_params", "trainable"), ("mmacs", "MMACs"),
                      ("input_size", "input"), ("top1", "top-1 %"), ("top5", "top-5 %")])
