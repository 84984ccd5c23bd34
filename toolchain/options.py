"""Options and parameter types shared by several subcommands (defined once)."""
from __future__ import annotations

import click

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON on stdout instead of a table.")


def _model_callback(ctx, param, value):
    if value is None:
        return None
    from shufflenet.errors import ConfigError
    from shufflenet.models import resolve_model_name

    try:
        return resolve_model_name(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


model_option = click.option("--model", "model", default=None, callback=_model_callback,
                            help="Model name, e.g. shufflenet_v2_x1_0 (see `shufflenet models`).")


def _positive(ctx, param, value):
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive integer, got {value}")
    return value


num_classes_option = click.option("--num_classes", "--num-classes", "num_classes", type=int,
                                  default=None, callback=_positive,
                                  help="Number of output classes.")
