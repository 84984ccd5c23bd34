"""The ``shufflenet`` click group; subcommands load lazily from ``toolchain.commands``.

Domain errors (:class:`shufflenet.errors.ShuffleNetError`) become one clean
line and exit code 1 here, at the edge; nothing below prints errors.
"""
from __future__ import annotations

import importlib
import logging
import os

import click

from shufflenet import __version__
from shufflenet.errors import ShuffleNetError

# name -> "module:attribute"; each subcommand lives in its own module so that
# `shufflenet models` does not import the exporters or ONNX Runtime.
SUBCOMMANDS = {
    "models": "toolchain.commands.models:models",
    "train": "toolchain.commands.train:train",
    "validate": "toolchain.commands.validate:validate",
    "export": "toolchain.commands.export:export",
    "parity": "toolchain.commands.parity:parity",
    "bench": "toolchain.commands.bench:bench",
    "targets": "toolchain.commands.targets:targets",
    "device": "toolchain.commands.device:device",
    "pipeline": "toolchain.commands.pipeline:pipeline",
    "verify": "toolchain.commands.verify:verify",
    "attest": "toolchain.commands.attest:attest",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in SUBCOMMANDS if self._load(n) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # subcommand not built yet
                return None
            raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ShuffleNetError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted") from None
        except OSError as exc:
            # a path the user gave that cannot be made or written (-o under a file, a read-only
            # or missing mount): one line naming it; OSErrors without a path stay tracebacks
            if exc.filename is None or not exc.strerror:
                raise
            raise click.ClickException(f"{exc.strerror}: {exc.filename}") from None
        except ModuleNotFoundError as exc:
            # Only training, validation, the reference runner and export from a
            # checkpoint need MindSpore; say so instead of a traceback.
            if (exc.name or "").split(".")[0] != "mindspore":
                raise
            raise click.ClickException(
                f"'shufflenet {ctx.invoked_subcommand}' needs MindSpore here, which is not "
                "installed: pip install mindspore") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.version_option(__version__, prog_name="shufflenet")
@click.option("-v", "--verbose", count=True, help="More log output on stderr (-vv for debug).")
def main(verbose: int) -> None:
    """ShuffleNetV2 from training to edge devices: train, export, check parity, bench."""
    os.environ.setdefault("GLOG_v", "3")
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
