"""Where an artifact runs, and the one way to reach it: ``device.open(...) -> Runner``.

Four kinds of device, one call::

    from runtimes import resolve_artifact
    from runtimes.devices import device_for

    art = resolve_artifact("out/m.ncnn.param")                 # once, at the edge
    dev = device_for("emu:arm64", cpu="cortex-a76")            # or "local", "ssh://me@pi:22"
    with dev.open("ncnn", art, threads=1, options={"fp16": True}) as runner:
        logits = runner.infer(batch)              # preprocessed NCHW float32, any batch size
        result = runner.latency(batch, {"iterations": 50})     # runtimes.measure.LatencyResult
        runner.device     # {"arch": "aarch64", "cpu": "Cortex-A76", "emulated": "qemu:...", ...}
    dev.describe()        # {"device": {...fingerprint...}, "engines": {name: version}}

* :class:`InProcessDevice` (``device_for("local", in_process=True)``): the runner
  lives in this process (the MindSpore checkpoint reference always does);
* :class:`SubprocessDevice` (``local``): a fresh Python on this machine, the
  interpreter running now (``sys.executable``, never a link to it): honest
  memory, no engine state leaking between targets;
* :class:`EmulatedArm64` (``emu:arm64``): aarch64 Python under qemu-user, built by
  ``shufflenet device setup arm64``; it sees this machine's files;
* :class:`SshDevice` (``ssh://user@host[:port]``): files go with ``scp`` into a
  fresh ``mktemp -d`` folder, removed on close. Every string that reaches the
  remote shell goes through :func:`shlex.quote`; host-key checking stays on
  unless the target sets ``ssh.strict_host_key_checking: false``.

Every device but the first runs the same agent zipapp (:mod:`runtimes.bundle`,
:mod:`runtimes.agent`): the engine code on a phone, a Raspberry Pi or under
qemu is the runners' own, and logits come back bit for bit.

Android (design, not implemented): the same serving session over ``adb``:
``adb push`` the files to ``/data/local/tmp/``, ``adb shell`` the agent with an
on-device Python (e.g. Termux).
"""
from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from shufflenet.artifact import Artifact
from shufflenet.errors import RuntimeEngineError

from . import agent as agent_module
from . import create_runner, get_engine
from ._lazy import engine_installed, not_installed
from .base import InputSpec, Runner
from .bundle import agent_zipapp
from .emulated import load_device
from .measure import LatencyResult
from .ssh import SshHost
from .targets import SshOptions

__all__ = ["AgentPool", "Device", "DeviceRunner", "EmulatedArm64", "InProcessDevice", "SshDevice",
           "SubprocessDevice", "device_for", "device_for_target"]

class Device:
    """A place runners live. :meth:`open` is the one way in."""

    where = "local"
    emulated = False
    in_process = False

    def open(self, engine: str, artifact: Artifact, threads: int | None = None,
             options: dict | None = None, affinity=None) -> Runner:
        """A (not yet active) runner of ``engine`` on ``artifact`` here; use it as a context manager."""
        return DeviceRunner(self, engine, artifact, threads, affinity=affinity,
                            **dict(options or {}))

    agents: "AgentPool | None" = None

    def keep_agents(self) -> "AgentPool":
        """Runners opened on this device inside ``with device.keep_agents():`` share agent
        processes: one that closes hands its agent (its artifact closed) to the next, instead
        of a new Python starting per artifact (seconds under emulation or over ssh). For
        numerics (parity); latency keeps a fresh process per runner, for honest memory."""
        return AgentPool(self)

    def describe(self) -> dict:
        """What the device says about itself: ``{"device": fingerprint, "engines": {...}}``."""
        staged = self.stage([])
        session = AgentSession(self, staged, timeout_s=300)
        try:
            return session.request({"op": "describe"})
        finally:
            session.close()
            self.unstage(staged)

    def label(self) -> str:
        return self.where

    # -- the agent's side: how its Python starts, where its files go ------------
    def agent_argv(self, staged: "Staged") -> list[str]:
        return [*self.python_argv(), staged.agent, "--serve"]

    def python_argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict | None:
        return None

    def stage(self, files: list[Path], agent: bool = True) -> "Staged":
        """Make ``files`` (and the agent zipapp unless not ``agent``) visible on the device
        (here: they already are)."""
        return Staged({str(f): str(f) for f in files}, str(agent_zipapp()) if agent else None, None)

    def unstage(self, staged: "Staged") -> None:
        pass


class Staged:
    def __init__(self, paths: dict, agent: str, remote_dir: str | None):
        self.paths, self.agent, self.remote_dir = paths, agent, remote_dir


class InProcessDevice(Device):
    """This process: the runner is the engine's own, no agent in between."""

    in_process = True

    def open(self, engine, artifact, threads=None, options=None, affinity=None) -> Runner:
        runner = create_runner(engine, artifact, threads=threads, **dict(options or {}))
        runner.affinity = affinity
        runner.device = {"where": "local", **agent_module.machine_fingerprint()}
        return runner

    def describe(self) -> dict:
        return agent_module.describe()


class SubprocessDevice(Device):
    """This machine, in a fresh Python process of this very interpreter."""

    def open(self, engine, artifact, threads=None, options=None, affinity=None) -> Runner:
        spec = get_engine(engine)   # this machine is the device: say so before a process starts
        if not engine_installed(spec.module):
            raise RuntimeEngineError(not_installed(spec.name, spec.module, spec.extra))
        return super().open(engine, artifact, threads, options, affinity)

    def python_argv(self) -> list[str]:
        return [sys.executable]


class EmulatedArm64(Device):
    """The emulated ARM64 device built by ``shufflenet device setup arm64``."""

    emulated = True

    def __init__(self, cpu: str | None = None):
        self.dev = load_device("arm64", cpu)
        self.where = f"emu:arm64 ({self.dev.cpu})"

    def python_argv(self) -> list[str]:
        return self.dev.python_argv()

    def env(self) -> dict:
        return self.dev.env()


class SshDevice(Device):
    """An ssh host: files and the zipapp go into a fresh ``mktemp -d`` folder, removed after."""

    def __init__(self, where: str, ssh_options: SshOptions | None = None):
        self.host = SshHost(where, ssh_options)
        self.where = where

    def agent_argv(self, staged: "Staged") -> list[str]:
        return self.host.ssh_argv(" ".join(
            shlex.quote(w) for w in [self.host.opts.python, staged.agent, "--serve"]))

    def stage(self, files: list[Path], agent: bool = True) -> Staged:
        remote_dir = self.host.make_dir()
        pyz = agent_zipapp() if agent else None
        try:
            self.host.copy_to([*files, *([pyz] if pyz else [])], remote_dir)
        except BaseException:
            self.host.run(["rm", "-rf", "--", remote_dir], "clean up", timeout=60)
            raise
        return Staged({str(f): f"{remote_dir}/{Path(f).name}" for f in files},
                      f"{remote_dir}/{pyz.name}" if pyz else None, remote_dir)

    def unstage(self, staged: Staged) -> None:
        if staged.remote_dir:
            try:
                self.host.run(["rm", "-rf", "--", staged.remote_dir], "clean up", timeout=60)
            except RuntimeEngineError:
                pass


def device_for(where: str = "local", ssh_options=None, cpu: str | None = None,
               in_process: bool = False) -> Device:
    """``local``, ``emu:arm64`` or ``ssh://user@host[:port]`` -> its :class:`Device`.

    ``local`` is a fresh Python process unless ``in_process``.
    """
    if where in (None, "", "local"):
        return InProcessDevice() if in_process else SubprocessDevice()
    if str(where).startswith("emu:"):
        if str(where)[4:] not in ("arm64", "aarch64"):
            raise RuntimeEngineError(f"unknown emulated device {where!r}; the one there is is "
                                     "emu:arm64")
        return EmulatedArm64(cpu)
    if str(where).startswith("ssh://"):
        return SshDevice(where, ssh_options)
    raise RuntimeEngineError(f"unknown device {where!r}: use local, emu:arm64 or "
                             "ssh://user@host[:port]")


def device_for_target(target, in_process: bool = False) -> Device:
    """The device a :class:`runtimes.targets.Target` lives on (its ``where``, ssh options,
    ``cpu``); a local target of the ``mindspore`` checkpoint engine runs in this process."""
    return device_for(target.where, ssh_options=target.ssh, cpu=getattr(target, "cpu", None),
                      in_process=in_process or target.engine == "mindspore")


# -- the agent session ---------------------------------------------------------------
class AgentSession:
    """One ``agent.pyz --serve`` process on a device; :meth:`request` is one round trip."""

    def __init__(self, device: Device, staged: Staged, timeout_s: float = 600):
        self.device, self.timeout_s = device, timeout_s
        try:
            self.proc = subprocess.Popen(device.agent_argv(staged), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True, env=device.env(), bufsize=1)
        except FileNotFoundError as exc:
            raise RuntimeEngineError(f"cannot start the agent on {device.label()}: "
                                     f"{exc.filename} not found") from None
        self._stderr: list[str] = []
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr = (self._stderr + [line])[-20:]

    def request(self, req: dict, progress=None) -> dict:
        """Send ``req``, return its reply; ``progress(phase, runs)`` gets the progress lines."""
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
                if line.startswith(agent_module.PROGRESS_MARK) and progress is not None:
                    phase, _, count = line[len(agent_module.PROGRESS_MARK):].strip().partition(" ")
                    progress(phase, int(count or 0))
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
        if rc == 255 and isinstance(self.device, SshDevice):  # ssh itself failed
            return self.device.host.unreachable(tail[-1] if tail else f"exit code {rc}",
                                                "\n".join(tail))
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


class AgentPool:
    """Agents on one device kept across runners (see :meth:`Device.keep_agents`).

    An agent serves one open artifact at a time; a runner that opens while every agent is
    busy (parity holds several open at once) starts another. A runner that closes sends
    ``close`` (the engine and its artifact go) and leaves its agent idle for the next; one
    that died is dropped. Leaving the ``with`` block stops every agent and removes its files.
    """

    def __init__(self, device: Device):
        self.device = device
        self._idle: list[tuple[AgentSession, Staged]] = []
        self._busy: dict[int, Staged] = {}
        self._closed = False
        self.started = 0          # agents started: what the pool saves is visible

    def __enter__(self) -> "AgentPool":
        if self.device.agents is not None:
            raise RuntimeError(f"{self.device.label()} already keeps its agents")
        self.device.agents = self
        return self

    def __exit__(self, *exc) -> None:
        self.device.agents = None
        self._closed = True
        while self._idle:
            self._stop(*self._idle.pop())

    def acquire(self, timeout_s: float) -> AgentSession:
        while self._idle:
            session, staged = self._idle.pop()
            if session.proc.poll() is None:
                self._busy[id(session)] = staged
                return session
            self._stop(session, staged)
        staged = self.device.stage([])
        try:
            session = AgentSession(self.device, staged, timeout_s)
        except BaseException:
            self.device.unstage(staged)
            raise
        self.started += 1
        self._busy[id(session)] = staged
        return session

    def release(self, session: AgentSession) -> None:
        staged = self._busy.pop(id(session))
        if not self._closed and session.proc.poll() is None:
            with contextlib.suppress(RuntimeEngineError):   # died closing: stopped below
                session.request({"op": "close"})
                self._idle.append((session, staged))
                return
        self._stop(session, staged)

    def _stop(self, session: AgentSession, staged: Staged) -> None:
        session.close()
        self.device.unstage(staged)


class DeviceRunner(Runner):
    """A runner whose engine runs on ``device`` through the agent (see :meth:`Device.open`).

    Options are checked on the host against the engine's own runner (an
    unknown one is rejected before anything starts) and applied on the
    device by that same runner.
    """

    def __init__(self, device: Device, engine: str, artifact: Artifact, threads: int | None = None,
                 timeout_s: float = 900, affinity=None, **options):
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
        self.device_obj, self.timeout_s, self.agent_affinity = device, timeout_s, affinity
        self.device: dict = {}
        self._session = self._staged = self._pool = None
        self._loaded: dict = {}

    def check_options(self, options: dict) -> None:
        """The engine's own runner checks the options, here, before the device starts."""
        self._engine_cls.check_options(options)

    def _activate_impl(self) -> None:
        self._pool = self.device_obj.agents
        self._staged = self.device_obj.stage(list(self.resolved.files), agent=self._pool is None)
        try:
            self._session = (self._pool.acquire(self.timeout_s) if self._pool is not None
                             else AgentSession(self.device_obj, self._staged, self.timeout_s))
            self._loaded = self._session.request({
                "op": "open", "engine": self.engine,
                "artifact": self._staged.paths[str(self.resolved.path)], "threads": self.threads,
                "options": self.options, "metadata": self.metadata,
                "affinity": list(self.agent_affinity) if self.agent_affinity else None})
        except BaseException:
            self._deactivate_impl()
            raise
        self.device = {**self._loaded["device"], "where": self.device_obj.label()}

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        reply = self._session.request({"op": "infer", "x": agent_module.encode_array(batch)})
        return agent_module.decode_array(reply["y"])

    def _latency_impl(self, batch: np.ndarray, policy, progress) -> LatencyResult:
        reply = self._session.request({"op": "latency", "x": agent_module.encode_array(batch),
                                       "policy": policy, "progress": progress is not None},
                                      progress=progress)
        result = LatencyResult.from_wire(reply["result"])
        result.load_s, result.artifact = float(self._loaded["load_s"]), self.artifact
        result.where = self.device_obj.label()
        return result

    def _input_spec_impl(self) -> InputSpec:
        if self._loaded:
            return InputSpec(str(self._loaded["input_name"]), tuple(self._loaded["input_shape"]))
        return super()._input_spec_impl()

    def _deactivate_impl(self) -> None:
        if self._session is not None:
            if self._pool is not None:
                self._pool.release(self._session)
            else:
                self._session.close()
            self._session = None
        if self._staged is not None:
            self.device_obj.unstage(self._staged)
            self._staged = None

    def _engine_version(self) -> str:
        return str(self._loaded.get("engine_version", "unknown"))
