"""Lazy engine imports: a missing engine is a clear error naming its pip extra."""
from __future__ import annotations

import contextlib
import importlib

from shufflenet.errors import RuntimeEngineError

PIP_NAME = "shufflenet-toolchain"


def install_hint(extra: str | None) -> str:
    return f'pip install "{PIP_NAME}[{extra}]"' if extra else f"pip install {PIP_NAME}"


def not_installed(engine: str, module: str, extra: str | None, why: str = "") -> str:
    """The one missing-engine message: what is missing and the pip line that brings it."""
    return (f"engine {engine!r} is not installed here (no Python module {module!r}"
            f"{f': {why}' if why else ''}): {install_hint(extra)}")


@contextlib.contextmanager
def stdout_redirected(to_devnull: bool = False):
    """Send what is printed on file descriptor 1 to stderr (or nowhere) meanwhile.

    ``import MNN``, MNN's loader and the edge converters print from C++ on
    stdout, which would corrupt a table or ``--json`` output; Python-level
    prints are redirected too.
    """
    import os
    import sys

    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (embedded): nothing to protect
        yield
        return
    null = open(os.devnull, "w") if to_devnull else None
    try:
        os.dup2(null.fileno() if null else 2, 1)
        with contextlib.redirect_stdout(null or sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
        if null:
            null.close()


def import_engine(module: str, engine: str, extra: str | None, quiet: bool = False):
    """Import ``module`` for ``engine`` or raise :class:`RuntimeEngineError`.

    ``quiet`` sends what the import prints on stdout to stderr (see
    :func:`stdout_redirected`).
    """
    try:
        if quiet:
            with stdout_redirected():
                return importlib.import_module(module)
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeEngineError(not_installed(engine, module, extra,
                                               getattr(exc, "msg", None) or str(exc))) from None


def engine_installed(module: str) -> bool:
    """True when ``module`` can be found (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
