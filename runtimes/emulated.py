"""An emulated ARM64 device: aarch64 CPython 3.11 under qemu-user, built in the cache.

``build_device("arm64")`` assembles, under ``$SHUFFLENET_HOME/devices/arm64``
(default ``~/.cache/shufflenet``):

- ``bin/qemu-aarch64``: the one binary of Debian bookworm-backports' ``qemu-user``
  (qemu 10; bookworm's 7.2 hands the guest the host's x86 ``/proc/cpuinfo``
  and ``import onnxruntime`` segfaults in its CPU detection);
- ``sysroot/``: Debian bookworm's arm64 ``python3.11`` and the libraries it
  loads, unpacked with ``dpkg-deb -x`` (no chroot, no binfmt_misc, the
  system's apt/dpkg state untouched: apt runs on a private state folder);
- ``site/``: the official aarch64 wheels of numpy, onnxruntime, MNN, ncnn and
  ai-edge-litert (``pip --target`` with every manylinux tag listed: pip does
  not expand to older tags by itself, and a short list silently resolves an
  old ai-edge-litert);
- ``bin/python3``: a host script that starts the guest Python under qemu,
  and ``site/sitecustomize.py`` pointing the guest's ``sys.executable`` at
  it (exec of the aarch64 binary itself fails with ENOEXEC, so child
  processes and multiprocessing need it);
- ``device.json``: what was built, written last: its presence means ready.

Every step reuses what an earlier run left (downloaded .debs, wheels), the
finished device is used offline, and a failure to reach apt or pip sources is
one :class:`DeviceError` line. Timings under emulation are 200-850x the
host's: the device is for numerics and protocol, never for latency verdicts.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from shufflenet.errors import RuntimeEngineError
from shufflenet.fileio import atomic_write

__all__ = ["CPU_MODELS", "DEVICES", "DeviceError", "EmulatedDevice", "build_device",
           "device_dir", "get_device", "load_device"]

RECIPE_VERSION = 2


class DeviceError(RuntimeEngineError):
    """An emulated device cannot be built or is not set up."""


@dataclass(frozen=True)
class CpuModel:
    name: str
    arch: str          # Arm architecture level
    features: tuple    # the numerics-relevant extensions qemu advertises
    note: str


# qemu's aarch64 CPU models that matter for inference numerics: ARMv8.0 has no
# fp16 arithmetic (MNN "low" falls back to fp32, ncnn only stores fp16);
# ARMv8.2+ models make MNN/ncnn run real fp16 and int8 dot-product kernels.
CPU_MODELS: dict[str, CpuModel] = {c.name: c for c in (
    CpuModel("cortex-a53", "armv8.0", (), "little core baseline (Raspberry Pi 3)"),
    CpuModel("cortex-a72", "armv8.0", (), "baseline: no fp16/dotprod (Raspberry Pi 4)"),
    CpuModel("cortex-a76", "armv8.2", ("fp16", "dotprod"), "phone big core (Pi 5)"),
    CpuModel("neoverse-n1", "armv8.2", ("fp16", "dotprod"), "Graviton2 class"),
    CpuModel("cortex-a710", "armv9.0", ("fp16", "dotprod", "i8mm", "bf16"), "recent phone big core"),
    CpuModel("neoverse-n2", "armv9.0", ("fp16", "dotprod", "i8mm", "bf16"), "Graviton3/4 class"),
    CpuModel("max", "armv9.x", ("fp16", "dotprod", "i8mm", "bf16"), "every feature qemu has"),
)}
DEFAULT_CPU = "cortex-a72"


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    deb_arch: str
    qemu: str
    python: str
    packages: tuple   # Debian packages unpacked into the sysroot
    wheels: tuple     # pip requirements installed for the guest
    pip_platforms: tuple


_ARM64_DEBS = (
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "python3.11", "libc6",
    "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libssl3", "libbz2-1.0",
    "liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8",
    "libdb5.3", "libcrypt1", "libnsl2", "libtirpc3", "libgssapi-krb5-2", "libkrb5-3",
    "libk5crypto3", "libcom-err2", "libkrb5support0", "libkeyutils1")

# The same versions as the host's test extra, so host and device differ only
# in CPU kernels.
_ARM64_WHEELS = ("numpy==1.26.4", "onnxruntime==1.32.0", "MNN==3.6.1", "ncnn==1.0.20261020",
                 "ai-edge-litert==2.3.0")

DEVICES: dict[str, DeviceSpec] = {
    "arm64": DeviceSpec("arm64", "arm64", "qemu-aarch64", "python3.11", _ARM64_DEBS, _ARM64_WHEELS,
                        ("manylinux2014_aarch64",)
                        + tuple(f"manylinux_2_{m}_aarch64" for m in range(17, 37))),
}


def get_device(name: str) -> DeviceSpec:
    try:
        return DEVICES[name]
    except KeyError:
        raise DeviceError(f"unknown emulated device {name!r}; choose from "
                          f"{', '.join(DEVICES)}") from None


def check_cpu(cpu: str) -> str:
    if cpu not in CPU_MODELS:
        raise DeviceError(f"unknown CPU model {cpu!r}; choose from {', '.join(CPU_MODELS)}")
    return cpu


def shufflenet_home() -> Path:
    """``$SHUFFLENET_HOME``, else ``$XDG_CACHE_HOME/shufflenet`` (``~/.cache/shufflenet``)."""
    return Path(os.environ.get("SHUFFLENET_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "shufflenet"))


def device_dir(name: str) -> Path:
    return shufflenet_home() / "devices" / name


# -- the built device ------------------------------------------------------------
class EmulatedDevice:
    """A built emulated device: the argv and environment that start its Python."""
    def __init__(self, root: Path, record: dict, cpu: str | None = None):
        self.root, self.record = Path(root), record
        self.name = record["name"]
        self.cpu = check_cpu(cpu or record.get("default_cpu") or DEFAULT_CPU)

    @property
    def qemu(self) -> Path:
        return self.root / "bin" / self.record["qemu"]

    @property
    def sysroot(self) -> Path:
        return self.root / "sysroot"

    @property
    def site(self) -> Path:
        return self.root / "site"

    def env(self) -> dict:
        """Environment for the guest: a clean PYTHONPATH, the sysroot, the CPU model."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "QEMU_", "LD_", "VIRTUAL_ENV"))}
        env.update({"QEMU_LD_PREFIX": str(self.sysroot), "QEMU_CPU": self.cpu,
                    "PYTHONPATH": str(self.site), "PYTHONNOUSERSITE": "1",
                    "PYTHONDONTWRITEBYTECODE": "1", "SHUFFLENET_EMULATED": f"qemu:{self.cpu}"})
        return env

    def python_argv(self) -> list[str]:
        return [str(self.qemu), str(self.sysroot / "usr" / "bin" / self.record["python"])]

    def describe(self) -> dict:
        c = CPU_MODELS[self.cpu]
        return {"device": f"emu:{self.name}", "root": str(self.root), "cpu": self.cpu,
                "arch_level": c.arch, "features": list(c.features), "emulated": True,
                "qemu_version": self.record.get("qemu_version"),
                "packages": self.record.get("wheels", {}), "size_mb": self.record.get("size_mb")}


def load_device(name: str, cpu: str | None = None) -> EmulatedDevice:
    """The built device ``name`` or a :class:`DeviceError` saying how to build it."""
    get_device(name)
    root = device_dir(name)
    marker = root / "device.json"
    if not marker.is_file():
        raise DeviceError(f"the emulated {name} device is not set up; build it once with "
                          f"`shufflenet device setup {name}` (needs apt and pip sources, "
                          f"~20 s, ~350 MB)")
    try:
        record = json.loads(marker.read_text())
    except json.JSONDecodeError:
        raise DeviceError(f"{marker} is corrupt; rebuild with `shufflenet device setup {name} "
                          "--force`") from None
    if record.get("recipe") != RECIPE_VERSION:
        raise DeviceError(f"the emulated {name} device in {root} was built by another version of "
                          f"this toolchain; rebuild with `shufflenet device setup {name} --force`")
    return EmulatedDevice(root, record, cpu)


# -- building --------------------------------------------------------------------
def _run(argv: list[str], what: str, cwd=None, env=None, timeout: float = 900,
         merge: bool = False) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise DeviceError(f"cannot {what}: {argv[0]} not found (the emulated device needs "
                          f"Debian's apt-get and dpkg-deb)") from None
    except subprocess.TimeoutExpired:
        raise DeviceError(f"cannot {what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.startswith(("E:", "ERROR", "W: Failed"))] or lines
        raise DeviceError(f"cannot {what}: {errs[-1][:300] if errs else f'exit code {proc.returncode}'}")
    return proc.stdout + proc.stderr if merge else proc.stdout


def _system_sources() -> dict[str, str]:
    """``{suite: mirror URI}`` from the system's apt sources (deb822 or one-line)."""
    found: dict[str, str] = {}
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split():
                for suite in fields.get("suites", "").split():
                    found.setdefault(suite, fields.get("uris", "").split()[0])
    lists = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]
    for path in lists:
        if path.is_file():
            for line in path.read_text().splitlines():
                m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m:
                    found.setdefault(m.group(2), m.group(1))
    return found


def _sources_list(release: str = "bookworm") -> str:
    have = _system_sources()
    main = have.get(release, "http://deb.debian.org/debian")
    security = have.get(f"{release}-security", "http://deb.debian.org/debian-security")
    key = "signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"
    return "\n".join([
        f"deb [arch=arm64 {key}] {main} {release} main",
        f"deb [arch=arm64 {key}] {main} {release}-updates main",
        f"deb [arch=arm64 {key}] {security} {release}-security main",
        f"deb [arch=amd64 {key}] {main} {release}-backports main", ""])


def _apt(state: Path) -> tuple[list[str], dict]:
    argv = ["apt-get", "-q", "-o", f"Dir::Etc::SourceList={state / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null", "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::Cache={state / 'cache'}", "-o", "APT::Architectures::=amd64",
            "-o", "APT::Architectures::=arm64", "-o", "Debug::NoLocking=1"]
    return argv, {**os.environ, "TMPDIR": "/var/tmp", "LC_ALL": "C"}


def _say(progress, msg: str) -> None:
    if progress:
        progress(msg)


def _fetch_debs(spec: DeviceSpec, work: Path, progress) -> Path:
    """Download qemu-user (backports) and the guest's .debs into ``work/debs``."""
    state, debs = work / "apt", work / "debs"
    for d in (state / "lists" / "partial", state / "cache" / "archives" / "partial", debs):
        d.mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(_sources_list())
    apt, env = _apt(state)
    wanted = [f"{p}:{spec.deb_arch}" for p in spec.packages] + ["qemu-user/bookworm-backports"]
    have = {p.name.split("_")[0] for p in debs.glob("*.deb")}
    if all(w.split(":")[0].split("/")[0] in have for w in wanted):
        return debs
    _say(progress, "apt: reading package lists (private state, system apt untouched)")
    what = "update the private apt package lists (are the Debian mirrors reachable?)"
    out = _run(apt + ["update"], what, env=env, timeout=600, merge=True)
    failed = [ln.strip() for ln in out.splitlines()
              if ln.startswith(("Err:", "W: Failed to fetch", "E: Failed to fetch"))]
    if failed:  # apt-get update exits 0 when a source is unreachable; the download would not say why
        raise DeviceError(f"cannot {what}: {failed[-1][:300]}")
    _say(progress, f"apt: downloading {len(wanted)} packages")
    _run(apt + ["download", *wanted], "download the device's Debian packages", cwd=debs, env=env,
         timeout=900)
    return debs


def _qemu_version(qemu: Path) -> str:
    out = _run([str(qemu), "--version"], "start qemu-aarch64", timeout=30)
    m = re.search(r"version (\d+[.\d]*)", out)
    return m.group(1) if m else out.strip().splitlines()[0]


def _unpack(debs: Path, stage: Path, spec: DeviceSpec) -> str:
    (stage / "bin").mkdir(parents=True, exist_ok=True)
    sysroot = stage / "sysroot"
    for deb in sorted(debs.glob("*.deb")):
        if deb.name.startswith("qemu-user_"):
            tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True)
            if tar.returncode != 0:
                raise DeviceError(f"cannot unpack {deb.name}: {tar.stderr.decode()[:200]}")
            binary = subprocess.run(["tar", "-xO", f"./usr/bin/{spec.qemu}"], input=tar.stdout,
                                    capture_output=True)
            if binary.returncode != 0 or not binary.stdout:
                raise DeviceError(f"{deb.name} holds no usr/bin/{spec.qemu}")
            target = stage / "bin" / spec.qemu
            target.write_bytes(binary.stdout)
            target.chmod(0o755)
        else:
            _run(["dpkg-deb", "-x", str(deb), str(sysroot)], f"unpack {deb.name}")
    version = _qemu_version(stage / "bin" / spec.qemu)
    if int(version.split(".")[0]) < 8:
        raise DeviceError(f"qemu {version} is too old (bookworm's 7.2 hands the guest the host's "
                          "cpuinfo and onnxruntime segfaults); bookworm-backports' qemu-user is "
                          "needed")
    return version


def _install_wheels(spec: DeviceSpec, site: Path, wheels_cache: Path, progress) -> dict:
    import sys

    _say(progress, f"pip: {len(spec.wheels)} aarch64 wheels for CPython 3.11")
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-warn-script-location", "--only-binary=:all:", "--python-version", "3.11",
            "--implementation", "cp", "--abi", "cp311", "--target", str(site),
            "--cache-dir", str(wheels_cache)]
    for plat in spec.pip_platforms:
        argv += ["--platform", plat]
    _run(argv + list(spec.wheels), "download the device's aarch64 wheels (is the package index "
         "reachable?)", timeout=900)
    got = {}
    for dist in site.glob("*.dist-info"):
        name, _, version = dist.name[:-len(".dist-info")].partition("-")
        got[name.lower().replace("_", "-")] = version
    return got


_WRAPPER = """#!/bin/sh
# Starts the emulated {name} device's Python (written by `shufflenet device setup`).
here="$(cd "$(dirname "$0")/.." && pwd)"
export QEMU_LD_PREFIX="$here/sysroot" PYTHONPATH="$here/site" PYTHONNOUSERSITE=1
export QEMU_CPU="${{QEMU_CPU:-{cpu}}}" SHUFFLENET_EMULATED="qemu:${{QEMU_CPU:-{cpu}}}"
exec "$here/bin/{qemu}" "$here/sysroot/usr/bin/{python}" "$@"
"""

_SITECUSTOMIZE = """# Written by `shufflenet device setup`: the guest cannot exec its own aarch64
# binary (ENOEXEC without binfmt_misc); child processes go through the host wrapper.
import os, sys
_wrapper = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bin", "python3")
if os.path.exists(_wrapper):
    sys.executable = _wrapper
"""


def _dir_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
                 / 2**20, 1)


def build_device(name: str = "arm64", cpu: str = DEFAULT_CPU, force: bool = False,
                 progress=None) -> tuple[EmulatedDevice, bool]:
    """Build (or reuse) the emulated device; returns ``(device, built_now)``.

    >>> dev, built = build_device("arm64", cpu="cortex-a76")   # doctest: +SKIP
    """
    spec = get_device(name)
    check_cpu(cpu)
    root = device_dir(name)
    if not force:
        try:
            dev = load_device(name)
        except DeviceError:
            pass
        else:
            if dev.record.get("default_cpu") != cpu:
                _set_default_cpu(dev, cpu)
            return load_device(name), False
    start = time.monotonic()
    work = root.parent / f".{name}-downloads"       # kept: makes a rebuild offline
    stage = root.parent / f".{name}-build"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    try:
        debs = _fetch_debs(spec, work, progress)
        _say(progress, "unpacking the sysroot and qemu-aarch64")
        qemu_version = _unpack(debs, stage, spec)
        site = stage / "site"
        wheels = _install_wheels(spec, site, work / "pip-cache", progress)
        (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        wrapper = stage / "bin" / "python3"
        wrapper.write_text(_WRAPPER.format(name=name, cpu=cpu, qemu=spec.qemu, python=spec.python))
        wrapper.chmod(0o755)
        record = {"name": name, "recipe": RECIPE_VERSION, "qemu": spec.qemu, "python": spec.python,
                  "qemu_version": qemu_version, "default_cpu": cpu, "wheels": wheels,
                  "debian_packages": list(spec.packages), "built_at": time.strftime(
                      "%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "build_s": round(time.monotonic() - start, 1), "size_mb": _dir_mb(stage)}
        _say(progress, "checking that the guest Python starts")
        dev = EmulatedDevice(stage, record, cpu)
        out = _run([*dev.python_argv(), "-c", "import platform, numpy; print(platform.machine())"],
                   "start the emulated Python", env=dev.env(), timeout=300)
        if out.strip() != "aarch64":
            raise DeviceError(f"the emulated Python reports machine {out.strip()!r}, not aarch64")
        (stage / "device.json").write_text(json.dumps(record, indent=2, sort_keys=True))
        if root.exists():
            shutil.rmtree(root)
        os.replace(stage, root)  # the device appears whole or not at all
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
    return load_device(name), True


def _set_default_cpu(dev: EmulatedDevice, cpu: str) -> None:
    record = {**dev.record, "default_cpu": cpu}
    wrapper = dev.root / "bin" / "python3"
    text = wrapper.read_text()
    wrapper_new = re.sub(r'QEMU_CPU:-[^}]*\}', f'QEMU_CPU:-{cpu}}}', text)
    atomic_write(wrapper, lambda tmp: Path(tmp).write_text(wrapper_new))
    wrapper.chmod(0o755)
    atomic_write(dev.root / "device.json",
                 lambda tmp: Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True)))
