"""Run the agent on a remote host over ssh (and the one-shot bench job anywhere).

The artifact (and its weights + metadata sidecar), one input batch and the
agent zipapp (:mod:`runtimes.bundle`: the runners themselves) are copied with ``scp`` into a fresh
``mktemp -d`` folder, the agent runs there with the target's Python, its JSON
comes back on stdout, and the folder is removed. Every string that reaches
the remote shell goes through :func:`shlex.quote`; host-key checking stays on
(``StrictHostKeyChecking=yes``) unless the target sets
``ssh.strict_host_key_checking: false``.

Android (design, not implemented): the same agent protocol over ``adb`` --
``adb push`` the files to ``/data/local/tmp/shufflenet-bench/``, ``adb shell``
the agent with an on-device Python (e.g. Termux), read the
``SHUFFLENET-AGENT-RESULT`` line; see the README.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from shufflenet.errors import RuntimeEngineError

from . import agent as agent_module
from .targets import SshOptions, parse_where

_SAFE_DIR = re.compile(r"^[A-Za-z0-9_./-]+$")


class SshHost:
    """``ssh://user@host[:port]`` plus the target's :class:`SshOptions`."""

    def __init__(self, where: str, options: SshOptions | None = None, timeout_s: float = 900):
        try:
            parts = parse_where(where)
        except ValueError as exc:
            raise RuntimeEngineError(f"bad remote target: {exc}") from None
        if parts["kind"] != "ssh":
            raise RuntimeEngineError(f"not an ssh target: {where!r}")
        self.where, self.opts, self.timeout_s = where, options or SshOptions(), timeout_s
        self.host, self.port, self.user = parts["host"], int(parts["port"]), parts["user"]
        if self.host.startswith("-") or (self.user or "").startswith("-"):
            raise RuntimeEngineError(f"refusing ssh host/user starting with '-': {where!r}")

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def common_options(self) -> list[str]:
        o = self.opts
        args = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(o.connect_timeout_s)}",
                "-o", "LogLevel=ERROR"]
        if o.strict_host_key_checking:
            args += ["-o", "StrictHostKeyChecking=yes"]
            if o.known_hosts:
                args += ["-o", f"UserKnownHostsFile={Path(o.known_hosts).expanduser()}"]
        else:
            args += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        if o.identity_file:
            args += ["-i", str(Path(o.identity_file).expanduser()), "-o", "IdentitiesOnly=yes"]
        return args

    def ssh_argv(self, remote_command: str) -> list[str]:
        """argv for running ``remote_command`` (already quoted) on the host."""
        return ["ssh", *self.common_options(), "-p", str(self.port), "--", self.dest, remote_command]

    def run(self, words: list[str], what: str, timeout: float | None = None,
            ok_codes: tuple = (0,), progress=None) -> str:
        """Run ``words`` (each shell-quoted here) remotely; return stdout."""
        return self._call(self.ssh_argv(" ".join(shlex.quote(w) for w in words)), what, timeout,
                          ok_codes, progress)

    def copy_to(self, files: list[Path], remote_dir: str) -> None:
        if not _SAFE_DIR.match(remote_dir):
            raise RuntimeEngineError(f"{self.where}: unexpected remote folder name {remote_dir!r}")
        argv = ["scp", "-q", *self.common_options(), "-P", str(self.port),
                *[str(f) for f in files], f"{self.dest}:{remote_dir}/"]
        self._call(argv, "copy the artifact")

    def _call(self, argv: list[str], what: str, timeout: float | None = None,
              ok_codes: tuple = (0,), progress=None) -> str:
        try:
            rc, out, err = stream_process(argv, timeout or self.timeout_s, progress)
        except FileNotFoundError:
            raise RuntimeEngineError(f"{argv[0]} not found: install the OpenSSH client to use "
                                     f"ssh targets") from None
        except subprocess.TimeoutExpired:
            raise RuntimeEngineError(f"{self.where}: timed out after {timeout or self.timeout_s:.0f} s "
                                     f"while trying to {what}") from None
        if rc not in ok_codes:
            msg = _last_line(err) or _last_line(out) or f"exit code {rc}"
            if rc == 255 or "Host key verification failed" in err:
                hint = ""
                if "host key" in err.lower():
                    hint = (" (add the host to known_hosts, e.g. with ssh-keyscan, or set "
                            "ssh.known_hosts; host-key checking stays on by default)")
                raise RuntimeEngineError(f"cannot reach {self.where}: {msg}{hint}")
            raise RuntimeEngineError(f"{self.where}: failed to {what}: {msg}")
        return out


def stream_process(argv: list[str], timeout: float, progress=None,
                   env: dict | None = None) -> tuple[int, str, str]:
    """Run ``argv``; feed agent progress lines on stderr to ``progress(phase, n)``.

    Returns ``(returncode, stdout, stderr without progress lines)``.
    """
    import threading
    import time

    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    out_chunks: list[str] = []
    reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    err_lines, start = [], time.monotonic()
    try:
        for line in proc.stderr:
            if line.startswith(agent_module.PROGRESS_MARK):
                if progress is not None:
                    phase, _, count = line[len(agent_module.PROGRESS_MARK):].strip().partition(" ")
                    progress(phase, int(count or 0))
            else:
                err_lines.append(line)
        rc = proc.wait()
        reader.join()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
    if rc < 0 and time.monotonic() - start >= timeout:
        raise subprocess.TimeoutExpired(argv, timeout)
    return rc, "".join(out_chunks), "".join(err_lines)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_agent_output(stdout: str, where: str) -> dict:
    """The agent's JSON result, or a :class:`RuntimeEngineError` with its message."""
    for line in reversed(stdout.splitlines()):  # an engine may print before the mark
        at = line.find(agent_module.RESULT_MARK)
        if at >= 0:
            return json.loads(line[at + len(agent_module.RESULT_MARK):])
        at = line.find(agent_module.ERROR_MARK)
        if at >= 0:
            raise RuntimeEngineError(f"benchmark agent on {where} failed: "
                                     f"{line[at + len(agent_module.ERROR_MARK):]}")
    raise RuntimeEngineError(f"benchmark agent on {where} printed no result: "
                             f"{_last_line(stdout) or '(no output)'}")


def run_local_agent(artifact: Path, batch: np.ndarray, job: dict, progress=None,
                    timeout: float = 3600, device=None) -> dict:
    """Run the agent zipapp here in a fresh Python process (honest peak RSS, no state leaks).

    ``device``: a :class:`runtimes.devices.Device` whose Python shares this
    machine's files (the emulated ARM64 device); default this machine's Python.
    """
    from .bundle import agent_zipapp
    from .devices import LocalDevice

    device = device or LocalDevice()
    with tempfile.TemporaryDirectory(prefix="shufflenet-agent-") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "input.npy", np.ascontiguousarray(batch, dtype=np.float32))
        (tmp / "job.json").write_text(json.dumps({**_with_metadata(job, artifact),
                                                  "artifact": str(artifact),
                                                  "input": str(tmp / "input.npy"),
                                                  "progress": progress is not None}))
        try:
            rc, out, err = stream_process([*device.python_argv(), str(agent_zipapp()),
                                           str(tmp / "job.json")], timeout, progress,
                                          env=device.env())
        except subprocess.TimeoutExpired:
            raise RuntimeEngineError(f"benchmark agent timed out after {timeout:.0f} s") from None
    where = "this machine" if not device.emulated else device.label()
    if rc not in (0, 2):
        raise RuntimeEngineError(f"benchmark agent on {where} crashed (exit code {rc}): "
                                 f"{_last_line(err) or _last_line(out) or 'no output'}")
    return parse_agent_output(out, where)


def _with_metadata(job: dict, artifact) -> dict:
    """The job plus the artifact's metadata as read here (a device may lack ``onnx``)."""
    if "metadata" in job or Path(artifact).suffix == ".ckpt":
        return job
    from shufflenet.artifact import resolve_artifact

    return {**job, "metadata": resolve_artifact(artifact).metadata}


def make_remote_dir(host: SshHost) -> str:
    """A fresh ``/tmp/shufflenet-bench.XXXXXX`` folder on ``host``."""
    made = host.run(["mktemp", "-d", "/tmp/shufflenet-bench.XXXXXX"], "create a working folder",
                    timeout=host.opts.connect_timeout_s + 30)
    remote_dir = _last_line(made)  # a login banner may come first
    if not (remote_dir.startswith("/tmp/shufflenet-bench.") and _SAFE_DIR.match(remote_dir)):
        raise RuntimeEngineError(f"{host.where}: mktemp gave an unexpected folder {remote_dir!r}")
    return remote_dir


def run_remote(host: SshHost, files: list[Path], batch: np.ndarray, job: dict,
               progress=None) -> dict:
    """Copy ``files`` + agent + ``batch`` to ``host``, run ``job`` there, return its result.

    ``job`` is the agent job without paths; ``job["artifact"]`` is set to the
    remote copy of ``files[0]``.
    """
    from .bundle import agent_zipapp

    remote_dir = make_remote_dir(host)
    try:
        with tempfile.TemporaryDirectory(prefix="shufflenet-remote-") as tmp:
            tmp = Path(tmp)
            np.save(tmp / "input.npy", np.ascontiguousarray(batch, dtype=np.float32))
            agent_path = agent_zipapp()
            remote_job = {**_with_metadata(job, files[0]), "artifact": f"{remote_dir}/{files[0].name}",
                          "input": f"{remote_dir}/input.npy", "progress": progress is not None}
            (tmp / "job.json").write_text(json.dumps(remote_job))
            host.copy_to([*files, agent_path, tmp / "input.npy", tmp / "job.json"], remote_dir)
        # exit 2 = the agent caught an error and printed it as a marked line
        out = host.run([host.opts.python, f"{remote_dir}/{agent_path.name}",
                        f"{remote_dir}/job.json"], "run the benchmark agent", ok_codes=(0, 2),
                       progress=progress)
        return parse_agent_output(out, host.where)
    finally:
        try:
            host.run(["rm", "-rf", "--", remote_dir], "clean up", timeout=60)
        except RuntimeEngineError:
            pass
