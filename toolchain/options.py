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
