"""Skips that become failures in CI.

CI (``.ci/run``) installs every engine, converter and sshd the tests use and
sets ``SHUFFLENET_STRICT=1``. There, a test that would skip because one of
them is missing is a broken install, not an optional extra, so it fails.
A user without the extras still gets a visible skip that names what to
install.

>>> from strict import missing, require_module
>>> ov = require_module("openvino", "extra 'openvino'")      # doctest: +SKIP
>>> missing("no /usr/sbin/sshd: apt-get install openssh-server")  # doctest: +SKIP
"""
from __future__ import annotations

import importlib
import os

import pytest

STRICT = os.environ.get("SHUFFLENET_STRICT", "") not in ("", "0", "false", "no")


def missing(reason: str):
    """Skip (locally) or fail (under SHUFFLENET_STRICT) because something is not installed."""
    if STRICT:
        pytest.fail(f"SHUFFLENET_STRICT: CI installs this, yet it is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def require_module(name: str, how_to_install: str):
    """Import ``name`` or call :func:`missing` naming how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"{name} not installed ({how_to_install}): {exc}")
