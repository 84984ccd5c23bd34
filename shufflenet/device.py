"""Device and execution-mode selection, the same code on Ascend, GPU and CPU."""
from __future__ import annotations

import logging
import os

from .errors import ConfigError

log = logging.getLogger(__name__)

DEVICE_TARGETS = ("Ascend", "GPU", "CPU")
_MODES = {"graph": 0, "pynative": 1}


def quiet_mindspore() -> None:
    """MindSpore logs many WARNING lines per process; keep stderr readable."""
    os.environ.setdefault("GLOG_v", "3")


def detect_device_target() -> str:
    """The best available backend: Ascend, then GPU, then CPU."""
    import mindspore as ms

    for target in ("Ascend", "GPU"):
        try:
            if ms.hal.is_available(target):
                return target
        except Exception:  # a backend plugin that fails to load just is not available
            continue
    return "CPU"


def normalize_device_target(value: str | None) -> str | None:
    if value is None or value == "" or str(value).lower() == "auto":
        return None
    for t in DEVICE_TARGETS:
        if t.lower() == str(value).lower():
            return t
    raise ConfigError(f"unknown device_target {value!r}; use one of {', '.join(DEVICE_TARGETS)} or auto")


def normalize_mode(mode) -> int:
    if isinstance(mode, int) and mode in (0, 1):
        return mode
    key = str(mode).lower().replace("_mode", "")
    if key in _MODES:
        return _MODES[key]
    raise ConfigError(f"unknown mode {mode!r}; use graph (0) or pynative (1)")


def init_context(device_target: str | None = None, mode="graph", threads: int | None = None) -> str:
    """Select device and execution mode; returns the device target in use.

    ``device_target`` None/"auto" picks Ascend, then GPU, then CPU.
    """
    import mindspore as ms

    quiet_mindspore()
    target = normalize_device_target(device_target) or detect_device_target()
    if target != "CPU" and not ms.hal.is_available(target):
        raise ConfigError(f"device_target {target} requested but MindSpore here has no {target} "
                          f"backend; install the {target} build of MindSpore or use --device_target CPU")
    ms.set_device(target)
    ms.set_context(mode=normalize_mode(mode))
    if threads and target == "CPU":
        try:
            ms.device_context.cpu.op_tuning.threads_num(int(threads))
        except RuntimeError:
            log.debug("CPU thread count already fixed for this process")
    return target
