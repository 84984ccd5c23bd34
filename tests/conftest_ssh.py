"""A real OpenSSH server on 127.0.0.1 for the ssh-target tests (imported explicitly).

Own config, own host key, key-only auth, ``UsePAM no``, a random free port.
When ``/usr/sbin/sshd`` is missing the tests skip and say why; CI's
``.ci/run`` installs openssh-server so they run there.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from strict import missing

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


@dataclass
class LocalSshd:
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    proc: subprocess.Popen

    @property
    def where(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(work: Path) -> LocalSshd:
    """Start sshd in the foreground on a free loopback port.

    Skips (with the reason) only when OpenSSH is not installed or, for a
    non-root user, cannot have its privilege-separation folder; any other
    start-up failure fails the test."""
    sshd = next((p for p in SSHD_CANDIDATES if os.path.exists(p)), None)
    if sshd is None:
        missing("no OpenSSH server (/usr/sbin/sshd): apt-get install openssh-server "
                "(TMPDIR=/var/tmp on these machines); CI's .ci/run installs it")
    for tool in ("ssh", "scp", "ssh-keygen"):
        if shutil.which(tool) is None:
            missing(f"OpenSSH client tool {tool!r} not installed")
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o700)
    host_key, client_key = work / "host_ed25519", work / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    (work / "authorized_keys").write_text((work / "client_ed25519.pub").read_text())
    os.chmod(work / "authorized_keys", 0o600)
    port, user = _free_port(), getpass.getuser()
    config = work / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"PidFile {work / 'sshd.pid'}", f"AuthorizedKeysFile {work / 'authorized_keys'}",
        "PubkeyAuthentication yes", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
        "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp",
        "LogLevel ERROR", "MaxStartups 50", ""]))
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        if os.geteuid() != 0 and not os.path.isdir("/run/sshd"):
            missing("sshd needs /run/sshd, which only root can create: run as root "
                    f"or create it ({check.stderr.strip()[:200]})")
        # sshd is installed (CI installs it): failing to start it is a failure, not a skip
        pytest.fail(f"sshd refuses the test config: {check.stderr.strip()[:300]}")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(work / "sshd.log", "w"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sshd exited at start: {(work / 'sshd.log').read_text()[-300:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("sshd did not start listening within 15 s")
    pub = (work / "host_ed25519.pub").read_text().split()
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    return LocalSshd(port, user, client_key, known, proc)


def stop_sshd(server: LocalSshd) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
