"""An ssh host as the devices reach it: quoted commands, scp, a fresh working folder.

Every string that reaches the remote shell goes through :func:`shlex.quote`;
host-key checking stays on (``StrictHostKeyChecking=yes``) unless the target
sets ``ssh.strict_host_key_checking: false``. :class:`runtimes.devices.SshDevice`
is the one user: it stages an artifact's files here and runs the agent's
serving session through :meth:`SshHost.ssh_argv`.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from shufflenet.errors import RuntimeEngineError

from .targets import SshOptions, parse_where

__all__ = ["SshHost"]

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

    def run(self, words: list[str], what: str, timeout: float | None = None) -> str:
        """Run ``words`` (each shell-quoted here) remotely; return stdout."""
        return self._call(self.ssh_argv(" ".join(shlex.quote(w) for w in words)), what, timeout)

    def copy_to(self, files: list[Path], remote_dir: str) -> None:
        if not _SAFE_DIR.match(remote_dir):
            raise RuntimeEngineError(f"{self.where}: unexpected remote folder name {remote_dir!r}")
        argv = ["scp", "-q", *self.common_options(), "-P", str(self.port),
                *[str(f) for f in files], f"{self.dest}:{remote_dir}/"]
        self._call(argv, "copy the artifact")

    def make_dir(self) -> str:
        """A fresh ``/tmp/shufflenet-bench.XXXXXX`` folder on the host."""
        made = self.run(["mktemp", "-d", "/tmp/shufflenet-bench.XXXXXX"], "create a working folder",
                        timeout=self.opts.connect_timeout_s + 30)
        remote_dir = _last_line(made)  # a login banner may come first
        if not (remote_dir.startswith("/tmp/shufflenet-bench.") and _SAFE_DIR.match(remote_dir)):
            raise RuntimeEngineError(f"{self.where}: mktemp gave an unexpected folder {remote_dir!r}")
        return remote_dir

    def unreachable(self, msg: str, err: str) -> str:
        hint = ""
        if "host key" in err.lower():
            hint = (" (add the host to known_hosts, e.g. with ssh-keyscan, or set "
                    "ssh.known_hosts; host-key checking stays on by default)")
        return f"cannot reach {self.where}: {msg}{hint}"

    def _call(self, argv: list[str], what: str, timeout: float | None = None) -> str:
        timeout = timeout or self.timeout_s
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout)
        except FileNotFoundError:
            raise RuntimeEngineError(f"{argv[0]} not found: install the OpenSSH client to use "
                                     f"ssh targets") from None
        except subprocess.TimeoutExpired:
            raise RuntimeEngineError(f"{self.where}: timed out after {timeout:.0f} s "
                                     f"while trying to {what}") from None
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
        if rc != 0:
            msg = _last_line(err) or _last_line(out) or f"exit code {rc}"
            if rc == 255 or "Host key verification failed" in err:
                raise RuntimeEngineError(self.unreachable(msg, err))
            raise RuntimeEngineError(f"{self.where}: failed to {what}: {msg}")
        return out


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
