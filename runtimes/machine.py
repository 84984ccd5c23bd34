"""Where a number was taken: this machine's arch, CPU model and features, emulated or not.

Standard library only; it ships in the agent zipapp, so a device describes
itself with this same code (the ``describe`` operation of :mod:`runtimes.agent`).
"""
from __future__ import annotations

import os
import platform

__all__ = ["machine_fingerprint", "parse_cpuinfo", "set_affinity", "user_mode_emulator"]

# -- where this runs ---------------------------------------------------------------
# Arm's MIDR part numbers (implementer 0x41) of the cores a deployment meets.
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
             "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
             "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
             "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd48": "Cortex-X2",
             "0xd49": "Neoverse-N2", "0xd40": "Neoverse-V1", "0xd4f": "Neoverse-V2",
             "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3", "0xd80": "Cortex-A520",
             "0xd81": "Cortex-A720", "0xd82": "Cortex-X4", "0xd0e": "Cortex-A76AE",
             "0xd42": "Cortex-A78AE", "0xd4b": "Cortex-A78C"}
# Qualcomm's own part numbers (implementer 0x51) for Kryo cores built on Arm's designs
# (Snapdragon 845/855/865 generation); later Snapdragons report Arm's implementer and part.
QCOM_PARTS = {"0x802": "Kryo 3xx Gold (Cortex-A75)", "0x803": "Kryo 3xx Silver (Cortex-A55)",
              "0x804": "Kryo 4xx Gold (Cortex-A76)", "0x805": "Kryo 4xx Silver (Cortex-A55)"}
# cpuinfo flags that change inference numerics or kernels, by a readable name
NUMERIC_FEATURES = {"fphp": "fp16", "asimdhp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm",
                    "bf16": "bf16", "sve": "sve", "sve2": "sve2", "avx2": "avx2",
                    "avx512f": "avx512", "avx512_vnni": "vnni", "avx_vnni": "vnni",
                    "avx512_bf16": "bf16", "amx_tile": "amx", "f16c": "f16c"}


def _core_model(block: dict) -> str | None:
    """One core's model: Arm's core name from its part number, else ``model name``."""
    part, implementer = block.get("cpu part"), block.get("cpu implementer")
    if part and implementer == "0x41":
        return ARM_PARTS.get(part, f"Arm part {part}")
    if part and implementer == "0x51" and part in QCOM_PARTS:
        return QCOM_PARTS[part]
    return block.get("model name")


def parse_cpuinfo(text: str) -> tuple[str, list, list]:
    """``(CPU model, numerics-relevant features, every distinct core model)`` from /proc/cpuinfo.

    The model and features are the first core's. A big.LITTLE phone lists its
    little cores first (``Cortex-A55``), so the core list is what says it also
    has ``Cortex-A76`` big cores.
    """
    blocks, block = [], {}
    for line in text.splitlines() + [""]:
        if not line.strip():
            if block:
                blocks.append(block)
            block = {}
            continue
        key, _, value = line.partition(":")
        block.setdefault(key.strip().lower(), value.strip())
    first = blocks[0] if blocks else {}
    flags = (first.get("features") or first.get("flags") or "").split()
    features = sorted({NUMERIC_FEATURES[f] for f in flags if f in NUMERIC_FEATURES})
    models = list(dict.fromkeys(m for m in map(_core_model, blocks) if m))
    hardware = next((b["hardware"] for b in blocks if b.get("hardware")), None)
    model = _core_model(first) or hardware or platform.processor() or platform.machine()
    return model, features, models or [model]


def _cpuinfo() -> tuple[str, list, list]:
    """:func:`parse_cpuinfo` of this machine's /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as fh:
            return parse_cpuinfo(fh.read())
    except OSError:
        return parse_cpuinfo("")


# userland arch -> kernel archs that run it natively (a 32-bit userland on a 64-bit kernel)
_NATIVE_ON = {"armv7l": ("aarch64", "arm64"), "armv8l": ("aarch64", "arm64"),
              "i386": ("x86_64",), "i686": ("x86_64",), "arm64": ("aarch64",),
              "amd64": ("x86_64",)}


def user_mode_emulator(kernel_arch: str | None, machine: str) -> str | None:
    """``qemu-user``-style emulation seen from inside: the kernel is of another arch.

    Under qemu-user (the emulated device, or Docker's ``--platform linux/arm64`` through
    binfmt) ``uname`` reports the guest arch but ``/proc/sys/kernel/arch`` is the host
    kernel's. Returns e.g. ``"user-mode: aarch64 on a x86_64 kernel"``, or None.

    >>> user_mode_emulator("x86_64", "aarch64")
    'user-mode: aarch64 on a x86_64 kernel'
    >>> user_mode_emulator("aarch64", "armv7l") is None   # native 32-bit userland
    True
    """
    if not kernel_arch or not machine:
        return None
    kernel, mine = kernel_arch.strip().lower(), machine.strip().lower()
    if kernel == mine or kernel in _NATIVE_ON.get(mine, ()):
        return None
    return f"user-mode: {machine} on a {kernel_arch.strip()} kernel"


def _kernel_arch() -> str | None:
    try:  # Linux 6.1+; absent elsewhere, and then there is nothing to compare
        with open("/proc/sys/kernel/arch") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def machine_fingerprint() -> dict:
    """Where the numbers were taken: arch, CPU model and features, emulated or not, cores, OS.

    ``emulated`` is the emulator and CPU model the host started this process
    under (``qemu:cortex-a76``), else what the process sees itself (a userland of
    another arch than the kernel's: qemu-user through binfmt, e.g. a Docker
    ``--platform`` container), or None on real hardware.
    """
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    model, features, models = _cpuinfo()
    return {"cpu": model, "cpu_models": models, "cpu_features": features, "arch": platform.machine(),
            "emulated": os.environ.get("SHUFFLENET_EMULATED")
            or user_mode_emulator(_kernel_arch(), platform.machine()),
            "logical_cores": os.cpu_count(), "usable_cores": usable,
            "machine": platform.machine(), "system": platform.platform(),
            "python": platform.python_version(), "hostname": platform.node()}


def set_affinity(cpus) -> list | None:
    """Pin this process to ``cpus`` (Linux); returns the previous set, or None."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    previous = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, [int(c) for c in cpus])
    return previous
