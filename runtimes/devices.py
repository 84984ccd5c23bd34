"""Where an artifact runs: this machine, an ssh host, or the emulated ARM64 device.

Every device runs the same agent zipapp (:mod:`runtimes.bundle`), so the
engine code on a phone, a Raspberry Pi or under qemu is the runners' own.
A :class:`DeviceRunner` is a :class:`~runtimes.base.Runner` whose engine
lives on a device: it starts one ``agent.pyz --serve`` session there, loads
the artifact once and sends each preprocessed NCHW batch over the session,
getting the logits back bit for bit. Parity and the pipeline use it like
any local runner.

>>> dev = device_for("emu:arm64", cpu="cortex-a76")                 # doctest: +SKIP
>>> with DeviceRunner(dev, "ncnn", "m.ncnn.param", fp16=True) as r:  # doctest: +SKIP
...     logits = r.infer(batch)
...     r.device                    # {"arch": "aarch64", "cpu": "Cortex-A76", "emulated": ...}
"""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from shufflenet.errors import RuntimeEngineError

from . import agent as agent_module
from .base import InputSpec, Runner

__all__ = ["AgentSession", "Device", "DeviceRunner", "EmulatedArm64", "LocalDevice", "SshDevice",
           "device_for", "device_for_target", "device_info"]


class Device:
    """A place the agent runs. Subclasses give the argv that starts its Python."""

    where = "local"
    emulated = False

    def python_argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict | None:
        return None

    def stage(self, files: list[Path]) -> "Staged":
        """Make ``files`` and the agent zipapp visible on the device."""
        from .bundle import agent_zipapp

        return Staged({str(f): str(f) for f in files}, str(agent_zipapp()), None)

    def unstage(self, staged: "Staged") -> None:
        pass

    def label(self) -> str:
        return self.where


class Staged:
    def __init__(self, paths: dict, agent: str, remote_dir: str | None):
        self.paths, self.agent, self.remote_dir = paths, agent, remote_dir


class LocalDevice(Device):
    """This machine, in a fresh Python process (honest memory, no leaked engine state)."""

    def python_argv(self) -> list[str]:
        return [sys.executable]


class EmulatedArm64(Device):
    """The emulated ARM64 device built by ``shufflenet device setup arm64``."""

    emulated = True

    def __init__(self, cpu: str | None = None):
        from .emulated import load_device

        self.dev = load_device("arm64", cpu)
        self.where = f"emu:arm64 ({self.dev.cpu})"

    def python_argv(self) -> list[str]:
        return self.dev.python_argv()

    def env(self) -> dict:
        return self.dev.env()


class SshDevice(Device):
    """An ssh host: files and the zipapp go into a fresh ``mktemp -d`` folder, removed after."""

    def __init__(self, where: str, ssh_options=None):
        from .remote import SshHost

        self.host = SshHost(where, ssh_options)
        self.where = where
        self._remote_dir: str | None = None

    def python_argv(self) -> list[str]:
        raise RuntimeEngineError("an ssh device starts its agent through ssh_argv")

    def stage(self, files: list[Path]) -> Staged:
        from .bundle import agent_zipapp
        from .remote import make_remote_dir

        remote_dir = make_remote_dir(self.host)
        pyz = agent_zipapp()
        try:
            self.host.copy_to([*files, pyz], remote_dir)
        except BaseException:
            self.host.run(["rm", "-rf", "--", remote_dir], "clean up", timeout=60)
            raise
        return Staged({str(f): f"{remote_dir}/{Path(f).name}" for f in files},
                      f"{remote_dir}/{pyz.name}", remote_dir)

    def unstage(self, staged: Staged) -> None:
        if staged.remote_dir:
            try:
                self.host.run(["rm", "-rf", "--", staged.remote_dir], "clean up", timeout=60)
            except RuntimeEngineError:
                pass


def device_for(where: str, ssh_options=None, cpu: str | None = None) -> Device:
    """``local``, ``emu:arm64`` or ``ssh://user@host[:port]`` -> its :class:`Device`."""
    if where in (None, "", "local"):
        return LocalDevice()
    if str(where).startswith("emu:"):
        if str(where)[4:] not in ("arm64", "aarch64"):
            raise RuntimeEngineError(f"unknown emulated device {where!r}; the one there is is "
                                     "emu:arm64")
        return EmulatedArm64(cpu)
    if str(where).startswith("ssh://"):
        return SshDevice(where, ssh_options)
    raise RuntimeEngineError(f"unknown device {where!r}: use local, emu:arm64 or "
                             "ssh://user@host[:port]")


def device_for_target(target) -> Device:
    """The device a :class:`runtimes.targets.Target` lives on (its ``where``, ssh options, ``cpu``)."""
    return device_for(target.where, ssh_options=target.ssh, cpu=getattr(target, "cpu", None))


class AgentSession:
    """One ``agent.pyz --serve`` process on a device; :meth:`request` is one round trip."""

    def __init__(self, device: Device, staged: Staged, timeout_s: float = 600):
        if isinstance(device, SshDevice):
            argv = device.host.ssh_argv(" ".join(
                shlex.quote(w) for w in [device.host.opts.python, staged.agent, "--serve"]))
        else:
            argv = [*device.python_argv(), staged.agent, "--serve"]
        self.device, self.timeout_s = device, timeout_s
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, env=device.env(),
                                         bufsize=1)
        except FileNotFoundError as exc:
            raise RuntimeEngineError(f"cannot start the agent on {device.label()}: "
                                     f"{exc.filename} not found") from None
        self._stderr: list[str] = []
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr = (self._stderr + [line])[-20:]

    def request(self, req: dict) -> dict:
        if self.proc.poll() is not None:
            raise RuntimeEngineError(self._died())
        timer = threading.Timer(self.timeout_s, self.proc.kill)
        timer.start()
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeEngineError(self._died())
                at = line.find(agent_module.REPLY_MARK)
                if at >= 0:
                    reply = json.loads(line[at + len(agent_module.REPLY_MARK):])
                    break
        except (BrokenPipeError, OSError):
            raise RuntimeEngineError(self._died()) from None
        finally:
            timer.cancel()
        if not reply.get("ok"):
            raise RuntimeEngineError(f"agent on {self.device.label()}: {reply.get('error')}")
        return reply

    def _died(self) -> str:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._err_reader.join(timeout=2)
        tail = [ln.strip() for ln in self._stderr if ln.strip()]
        rc = self.proc.returncode
        why = f"timed out after {self.timeout_s:.0f} s" if rc == -9 else f"exit code {rc}"
        return (f"the agent on {self.device.label()} stopped ({why})"
                + (f": {tail[-1][:300]}" if tail else ""))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request({"op": "quit"})
            except RuntimeEngineError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def device_info(device: Device) -> dict:
    """What the device says about itself: arch, CPU model, features, emulated, engines."""
    staged = device.stage([])
    session = AgentSession(device, staged, timeout_s=300)
    try:
        return session.request({"op": "info"})
    finally:
        session.close()
        device.unstage(staged)


class DeviceRunner(Runner):
    """A runner whose engine runs on ``device`` through the agent.

    Options are checked on the host against the engine's own runner (an
    unknown one is rejected before anything starts) and applied on the
    device by that same runner.
    """

    def __init__(self, device: Device, engine: str, artifact, threads: int | None = None,
                 timeout_s: float = 900, **options):
        from . import get_engine

        spec = get_engine(engine)
        self.engine = spec.name
        self.extra = spec.extra
        self._engine_cls = spec.runner_class()
        super().__init__(artifact, threads=threads, **options)
        if self.resolved.format not in spec.formats:
            raise RuntimeEngineError(f"engine {spec.name!r} cannot run a {self.resolved.format!r} "
                                     f"artifact ({self.artifact})")
        if spec.name == "mindspore":
            raise RuntimeEngineError("the mindspore checkpoint engine is the reference and runs "
                                     "only here; export the checkpoint for a device")
        self.device_obj, self.timeout_s = device, timeout_s
        self.device: dict = {}
        self._session = self._staged = None
        self._loaded: dict = {}

    def check_options(self, options: dict) -> None:
        """The engine's own runner checks the options, here, before the device starts."""
        self._engine_cls.check_options(options)

    def _activate_impl(self) -> None:
        self._staged = self.device_obj.stage(list(self.resolved.files))
        try:
            self._session = AgentSession(self.device_obj, self._staged, self.timeout_s)
            self._loaded = self._session.request({
                "op": "load", "engine": self.engine,
                "artifact": self._staged.paths[str(self.resolved.path)], "threads": self.threads,
                "options": self.options, "metadata": self.metadata})
        except BaseException:
            self._deactivate_impl()
            raise
        self.device = {**self._loaded["device"], "where": self.device_obj.label()}

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        reply = self._session.request({"op": "infer", "x": agent_module.encode_array(batch)})
        return agent_module.decode_array(reply["y"])

    def _input_spec_impl(self) -> InputSpec:
        if self._loaded:
            return InputSpec(str(self._loaded["input_name"]), tuple(self._loaded["input_shape"]))
        return super()._input_spec_impl()

    def _deactivate_impl(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self._staged is not None:
            self.device_obj.unstage(self._staged)
            self._staged = None

    def _engine_version(self) -> str:
        return str(self._loaded.get("engine_version", "unknown"))
