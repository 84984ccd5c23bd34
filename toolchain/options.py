"""Options and parameter types shared by several subcommands (defined once)."""
from __future__ import annotations

import click

from shufflenet.errors import ConfigError
from shufflenet.train.launch import parse_master, spec_from_options

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON on stdout instead of a table.")


def _model_callback(ctx, param, value):
    if value is None:
        return None
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


class AliasOption(click.Option):
    """An option whose old spellings (``hidden_aliases``) still parse but stay out of --help."""

    def __init__(self, *args, hidden_aliases=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx):
        shown, self.opts = self.opts, [o for o in self.opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = shown


# One spelling for the targets file everywhere (bench, targets, pipeline); the
# old `--targets FILE` of bench/targets still parses (the pipeline's `--targets`
# was a list of names: it keeps that meaning as its own hidden alias).
targets_file_option = click.option(
    "--targets-file", "--targets_file", "--targets", "targets_file", cls=AliasOption,
    hidden_aliases=("--targets_file", "--targets"), type=click.Path(dir_okay=False), default=None,
    metavar="FILE", help="A targets.yaml adding targets (or replacing built-ins of the same name).")

pipeline_targets_file_option = click.option(
    "--targets-file", "--targets_file", "targets_file", cls=AliasOption,
    hidden_aliases=("--targets_file",), type=click.Path(dir_okay=False), default=None,
    metavar="FILE", help="A targets.yaml with your own targets.")


# -- data-parallel launch (train, pipeline) -----------------------------------
def _master_callback(ctx, param, value):
    if value is None:
        return None

    try:
        parse_master(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    return value.strip()


def launch_options(fn):
    """``--devices``, ``--nodes``, ``--node-rank``, ``--master``: how training is spread."""
    opts = [
        click.option("--devices", type=click.IntRange(1), default=None, metavar="N", show_default=False,
                     help="Data-parallel ranks on this machine, started with msrun [default: 1; "
                          "a distribute: True recipe uses every local Ascend/GPU device]."),
        click.option("--nodes", type=click.IntRange(1), default=1, metavar="M", show_default=False,
                     help="Machines taking part; run the same command on each [default: 1]."),
        click.option("--node-rank", "--node_rank", "node_rank", type=click.IntRange(0), default=0,
                     metavar="R", show_default=False, help="This machine's index, 0..M-1; node 0 writes checkpoints "
                                      "[default: 0]."),
        click.option("--master", default=None, callback=_master_callback, metavar="ADDR[:PORT]",
                     help="Node 0's address (and port, default 8118) for --nodes > 1."),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def launch_spec(devices, nodes, node_rank, master):
    """A checked :class:`~shufflenet.train.launch.LaunchSpec` from the CLI, or None to let the recipe decide."""
    spec = spec_from_options(devices, nodes, node_rank, master)
    return spec.check() if spec is not None else None
