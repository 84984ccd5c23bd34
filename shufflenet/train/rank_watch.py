"""Watch the ranks msrun started: copy rank 0's log to the terminal, stop all when one dies.

msrun's own join loop notices a dead local worker within a second but then
waits for its scheduler, which on a lost node means a long timeout. The
watcher polls every rank's process (each writes ``rank<R>.pid`` when it
starts, ``rank<R>.done`` when it ends cleanly; see :mod:`.worker`) and
msrun's log, and on the first rank that ends without finishing kills every
rank and msrun, then raises :class:`LaunchError` naming the rank with its
last log lines.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from ..errors import ShuffleNetError

TAIL_LINES = 15
_MS_LOG = re.compile(r"\[(DEBUG|INFO|WARNING)\] [A-Z_]+\(\d+,")  # MindSpore's own log lines
_MS_LOG_START = re.compile(r"(?=\[(?:DEBUG|INFO|WARNING|ERROR)\] [A-Z_]+\(\d+,)")
_LOST_NODE = re.compile(r"The node: (\d+) is timed out")


class LaunchError(ShuffleNetError):
    """A data-parallel run failed: a rank died or the launcher could not start it."""



def _alive(pid: int) -> bool:
    """Running (a zombie waiting for msrun to reap it counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False


def _raise_on_termination() -> dict:
    """Make SIGTERM and SIGHUP raise SystemExit here (main thread only); the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue  # `nohup` (or the caller) chose to ignore it: keep it so
        previous[sig] = signal.signal(sig, stop)
    return previous


def last_lines(path: Path, n: int = TAIL_LINES) -> list[str]:
    """The last ``n`` non-empty lines of a log (progress-bar redraws collapsed)."""
    try:
        data = path.read_bytes()[-20000:].decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    out = []
    for seg in data.split("\n"):
        # a progress bar redrawn with \r shows its last state; MindSpore's own INFO/WARNING
        # lines (which may follow a bar on the same line) are noise here
        for piece in _MS_LOG_START.split(seg.split("\r")[-1]):
            if piece.strip() and not _MS_LOG.match(piece):
                out.append(piece.rstrip())
    return out[-n:]


class RankWatcher:
    """Runs msrun, copies one rank's log to the terminal, stops everything when a rank dies."""

    _EXIT = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)")

    def __init__(self, spec, cmd: list, env: dict, log_dir: Path, stream) -> None:
        # spec: the launch's LaunchSpec (launch.py imports this module, so no annotation import)
        self.spec, self.cmd, self.env, self.log_dir, self.stream = spec, cmd, env, log_dir, stream
        first = spec.node_rank * spec.devices
        self.ranks = list(range(first, first + spec.devices))
        self.rank_logs = {r: log_dir / f"worker_{r}.log" for r in self.ranks}
        self.msrun_log = log_dir / "msrun.log"
        self.proc: subprocess.Popen | None = None
        self._tail_pos = 0
        self._partial = ""
        self._msrun_pos = 0
        self._exit = None

    def pids(self) -> dict[int, int]:
        out = {}
        for r in self.ranks:
            try:
                out[r] = int((self.log_dir / f"rank{r}.pid").read_text())
            except (FileNotFoundError, ValueError):
                pass
        return out

    def _done(self, rank: int) -> bool:
        return (self.log_dir / f"rank{rank}.done").exists()

    def _pump(self) -> None:
        """Copy new bytes of this node's first rank's log to the terminal."""
        if self.stream is None:
            return
        path = self.rank_logs[self.ranks[0]]
        try:
            with open(path, "rb") as f:
                f.seek(self._tail_pos)
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        self._tail_pos += len(data)
        *complete, last = (self._partial + data.decode("utf-8", "replace")).split("\n")
        # a trailing piece that may still become a MindSpore log line waits for its newline;
        # anything else (a progress bar redrawn with \r) is shown at once
        self._partial = last if last.startswith("[") else ""
        out = "".join(ln + "\n" for ln in complete if not _MS_LOG.match(ln))
        if not self._partial:
            out += last
        if out:
            self.stream.write(out)
            self.stream.flush()

    def _dead_rank(self) -> tuple[int | None, str] | None:
        """(rank, how) of the rank that ended first without finishing, else None.

        Several ranks can be found dead in one poll: msrun checks its workers
        once a second and, on the first failure, logs that worker's exit and
        SIGKILLs the others, so a poll landing just after that sees the
        killed survivors too. Rank order would then blame rank 0 for rank 1's
        death; msrun's line names the one that went first.
        """
        pids = self.pids()
        dead = [r for r, pid in pids.items() if not _alive(pid) and not self._done(r)]
        m = self._msrun_exit()  # read after the scan: msrun logs before it kills the rest
        if m:
            pid, code = int(m.group(1)), int(m.group(2))
            rank = next((r for r, p in pids.items() if p == pid), None)
            if rank in dead or not dead:
                return rank, f"exit code {code}" + (f" (signal {-code})" if code < 0 else "")
        if len(dead) == 1:
            return dead[0], f"process {pids[dead[0]]} died"
        if dead:
            return None, ("ranks " + ", ".join(f"{r} (process {pids[r]})" for r in dead)
                          + " died between two checks; which went first is unknown")
        return None

    def _msrun_exit(self):
        """msrun's own "worker exited with exception" line, read incrementally."""
        if self._exit is None and self.msrun_log.exists():
            with open(self.msrun_log, "rb") as f:
                f.seek(self._msrun_pos)
                data = f.read()
            cut = data.rfind(b"\n") + 1  # whole lines only
            self._msrun_pos += cut
            self._exit = self._EXIT.search(data[:cut].decode("utf-8", "replace"))
        return self._exit

    def kill_all(self) -> None:
        for pid in self.pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)  # msrun starts each worker in its own session
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # msrun, its scheduler, its tails
            except ProcessLookupError:
                pass
            self.proc.wait()

    def _lost_elsewhere(self) -> str:
        """Ranks msrun's scheduler (node 0) saw time out: a rank on another node died."""
        log = self.log_dir / "scheduler.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        lost = sorted({int(r) for r in _LOST_NODE.findall(text)} - set(self.ranks))
        if not lost:
            return ""
        return (f" The scheduler lost rank(s) {', '.join(map(str, lost))} on another node first "
                f"(timed out): look at that node's log.")

    def _failure(self, rank: int | None, how: str) -> LaunchError:
        if rank is None:  # died before it could say who it was: show every rank that did not finish
            unfinished = [r for r in self.ranks if not self._done(r)] or self.ranks
            parts = [f"rank {r} ({self.rank_logs[r]}):\n  " + "\n  ".join(last_lines(self.rank_logs[r]))
                     for r in unfinished]
            return LaunchError(f"a training rank failed ({how}); the others were stopped. "
                               f"Last log lines:\n" + "\n".join(parts))
        lines = last_lines(self.rank_logs.get(rank, self.log_dir / f"worker_{rank}.log"))
        return LaunchError(f"training rank {rank} of {self.spec.world_size} failed ({how}); "
                           f"the other ranks were stopped.{self._lost_elsewhere()} "
                           f"Last lines of {self.rank_logs.get(rank)}:\n  "
                           + "\n  ".join(lines or ["(empty log)"]))

    def run(self) -> None:
        # msrun and every rank live in sessions of their own, so a SIGTERM/SIGHUP to this process
        # (a CI timeout, `timeout`, `kill`, a closed terminal) would end it alone and leave them
        # training on, holding the master port; turn those signals into an exception so the
        # cleanup in _watch runs
        previous = _raise_on_termination()
        try:
            self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _watch(self) -> None:
        try:
            with open(self.msrun_log, "wb") as out:
                self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            while True:
                self._pump()
                dead = self._dead_rank()
                if dead is not None:
                    self.kill_all()
                    self._pump()
                    raise self._failure(*dead)
                rc = self.proc.poll()
                if rc is not None:
                    self._pump()
                    unfinished = [r for r in self.ranks if not self._done(r)]
                    if rc == 0 and not unfinished:
                        return
                    self.kill_all()
                    if unfinished:
                        raise self._failure(unfinished[0] if len(unfinished) == 1 else None,
                                            f"msrun exited with code {rc}")
                    raise LaunchError(f"msrun exited with code {rc} after every rank finished; "
                                      f"see {self.msrun_log}:\n  "
                                      + "\n  ".join(last_lines(self.msrun_log)))
                time.sleep(0.2)
        except BaseException:
            self.kill_all()  # Ctrl-C or an error here must not leave ranks behind
            raise
