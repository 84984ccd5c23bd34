"""Lazy engine imports: a missing engine is a clear error naming its pip extra."""
from __future__ import annotations

import contextlib
import importlib

from shufflenet.errors import RuntimeEngineError

PIP_NAME = "shufflenet-toolchain"


def install_hint(extra: str | None) -> str:
    return f'pip install "{PIP_NAME}[{extra}]"' if extra else f"pip install {PIP_NAME}"


@contextlib.contextmanager
def stdout_to_stderr():
    """Send what native code prints on file descriptor 1 to stderr meanwhile.

    ``import MNN`` and MNN's loader print from C++ on stdout, which would
    corrupt ``--json`` output; Python-level prints are redirected too.
    """
    import os
    import sys

    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (embedded): nothing to protect
        yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)


def import_engine(module: str, engine: str, extra: str | None, quiet: bool = False):
    """Import ``module`` for ``engine`` or raise :class:`RuntimeEngineError`.

    ``quiet`` sends what the import prints on stdout to stderr (see
    :func:`stdout_to_stderr`).
    """
    try:
        if quiet:
            with stdout_to_stderr():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeEngineError(
            f"engine {engine!r} needs the Python module {module!r}, which is not installed "
            f"({exc.msg if hasattr(exc, 'msg') else exc}): {install_hint(extra)}") from None


def engine_installed(module: str) -> bool:
    """True when ``module`` can be found (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
