"""Launch data-parallel training with MindSpore's own launcher (msrun), and watch it.

One device keeps the in-process path. ``devices`` > 1 or ``nodes`` > 1 starts
``msrun`` with one :mod:`shufflenet.train.worker` per local device and
supervises it: a free port (one node), logs in a folder of the run, rank 0's
progress copied to the terminal, and a dead rank noticed within a fraction of
a second, the other ranks killed and an error naming the rank with its last
log lines (msrun alone would wait for its scheduler, minutes on a lost node).

>>> spec = LaunchSpec(devices=2)                                 # 2 local ranks
>>> spec.world_size
2
>>> outcome = launch_training(cfg, spec, log_dir="runs/x/logs")  # doctest: +SKIP

Several machines run the same command with ``nodes=M``, their own
``node_rank`` and one ``master`` address; ranks are numbered node by node, so
global rank 0 is node 0's first device, the only writer of checkpoints.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..data.pipeline import open_source
from ..device import detect_device_target, normalize_device_target
from ..errors import ConfigError
from ..fileio import atomic_write
from .distributed import under_launcher
from .rank_watch import LaunchError, RankWatcher
from .run_checkpoints import read_metrics
from .trainer import TrainResult, train

DEFAULT_MASTER_PORT = 8118  # msrun's own default; several nodes must agree on one


@dataclass(frozen=True)
class LaunchSpec:
    """How training is spread: ``devices`` local workers on each of ``nodes`` machines."""

    devices: int = 1
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None  # None: a free port (one node) or msrun's default 8118

    @property
    def world_size(self) -> int:
        return self.devices * self.nodes

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def problems(self) -> list[str]:
        """What is wrong with these options, one message each (empty when fine)."""
        out = []
        if self.devices < 1:
            out.append(f"--devices must be at least 1, got {self.devices}")
        if self.nodes < 1:
            out.append(f"--nodes must be at least 1, got {self.nodes}")
        elif not 0 <= self.node_rank < self.nodes:
            out.append(f"--node-rank must be in [0, {self.nodes - 1}] for --nodes {self.nodes}, "
                       f"got {self.node_rank}")
        if self.master_port is not None and not 1024 <= self.master_port <= 65535:
            out.append(f"--master port must be in 1024..65535, got {self.master_port}")
        return out

    def check(self) -> "LaunchSpec":
        bad = self.problems()
        if bad:
            raise ConfigError("; ".join(bad))
        return self


def parse_master(text: str | None) -> tuple[str, int | None]:
    """``ADDR[:PORT]`` -> ``(addr, port or None)``; a clear error for anything else.

    >>> parse_master("10.0.0.1:29500"), parse_master("node0")
    (('10.0.0.1', 29500), ('node0', None))
    """
    if not text:
        return "127.0.0.1", None
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.\-]+))(?::(\d+))?", text.strip())
    if not m:
        raise ConfigError(f"--master takes ADDR or ADDR:PORT ([IPv6]:PORT), got {text!r}")
    port = int(m.group(3)) if m.group(3) else None
    if port is not None and not 1024 <= port <= 65535:
        raise ConfigError(f"--master port must be in 1024..65535, got {port}")
    return m.group(1) or m.group(2), port


def spec_from_options(devices: int | None, nodes: int = 1, node_rank: int = 0,
                      master: str | None = None) -> LaunchSpec | None:
    """The :class:`LaunchSpec` the CLI options ask for, or None when they leave it to the recipe.

    Not checked (see :meth:`LaunchSpec.problems`), except that ``master`` needs
    several ranks: one process has no master, and taking it silently would
    also turn a ``distribute: True`` recipe's every-local-device launch into
    one process.
    """
    if devices is None and nodes == 1 and node_rank == 0 and not master:
        return None
    if master and nodes == 1 and (devices or 1) == 1:
        raise ConfigError("--master is for several ranks: give --nodes M (M > 1) or --devices N "
                          "(N > 1), or drop --master")
    addr, port = parse_master(master)
    return LaunchSpec(devices=devices or 1, nodes=nodes, node_rank=node_rank, master_addr=addr,
                      master_port=port)


def local_device_count(target: str) -> int:
    """Devices of ``target`` (Ascend/GPU) on this machine; 1 for CPU."""
    if target == "CPU":
        return 1
    import mindspore as ms

    ctx = getattr(ms.device_context, target.lower(), None)
    if ctx is not None and hasattr(ctx, "device_count"):
        return int(ctx.device_count())
    return int(ms.hal.device_count(target))


def resolve_spec(cfg, spec: LaunchSpec | None) -> tuple[LaunchSpec, str | None]:
    """The launch actually used for ``cfg``, and a one-line note when it was decided for the user.

    An explicit ``spec`` wins. Without one, a recipe with ``distribute: True``
    run outside a launcher uses every local Ascend/GPU device; on CPU it trains
    in one process (the note says so). Under a launcher (msrun/mpirun started
    this process) the launcher already decided: one local process.
    """
    if spec is not None:
        spec.check()
        if spec.devices > 1:
            target = normalize_device_target(cfg.get("device_target")) or detect_device_target()
            n = local_device_count(target)
            if target != "CPU" and spec.devices > n:
                raise ConfigError(f"--devices {spec.devices} but this machine has {n} {target} "
                                  f"device(s)")
        return spec, None
    if not cfg.get("distribute") or under_launcher():
        return LaunchSpec(), None
    target = normalize_device_target(cfg.get("device_target")) or detect_device_target()
    if target == "CPU":
        return LaunchSpec(), ("distribute: True on CPU: training in one process "
                              "(--devices N starts N data-parallel CPU ranks)")
    n = local_device_count(target)
    if n <= 1:
        return LaunchSpec(), f"distribute: True but this machine has {n} {target} device: one process"
    return LaunchSpec(devices=n), f"distribute: True: launching msrun on all {n} local {target} devices"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class LaunchOutcome:
    """What a launch did: the world, the command, and (node 0) rank 0's training result."""

    spec: LaunchSpec
    command: list
    log_dir: Path
    result: object = None              # TrainResult on node 0, None on the others
    rank_logs: dict = field(default_factory=dict)  # rank -> log path (this node)
    seconds: float = 0.0


def distributed_summary(cfg, spec: LaunchSpec, command: list | None = None) -> dict:
    """World size, per-rank and global batch, the LR as the recipe states it, the launcher line."""
    per_rank = int(cfg["batch_size"])
    return {"world_size": spec.world_size, "devices_per_node": spec.devices, "nodes": spec.nodes,
            "node_rank": spec.node_rank, "per_rank_batch": per_rank,
            "global_batch": per_rank * spec.world_size, "lr": float(cfg["lr"]),
            "lr_note": "the recipe's LR, not rescaled for the global batch (MindCV semantics: "
                       "batch_size is per device)",
            "launcher_command": shlex.join(command) if command else None}


def join_note(spec: LaunchSpec, port: int) -> str:
    """What a node of a several-node run waits for (it prints nothing else until all have joined).

    >>> join_note(LaunchSpec(devices=8, nodes=2, node_rank=1, master_addr="10.0.0.1"), 8118)
    'node 1 of 2 (8 rank(s) here, 16 in all): waiting until every node has joined 10.0.0.1:8118'
    """
    note = (f"node {spec.node_rank} of {spec.nodes} ({spec.devices} rank(s) here, "
            f"{spec.world_size} in all): waiting until every node has joined "
            f"{spec.master_addr}:{port}")
    if spec.master_addr in ("127.0.0.1", "localhost", "::1"):
        note += (" -- a loopback master: only nodes on this machine can join; on a cluster "
                 "give every node --master NODE0_ADDRESS")
    return note


def _msrun_command(spec: LaunchSpec, port: int, log_dir: Path, task: list[str]) -> list[str]:
    """msrun's command line starting ``python TASK...`` once per local rank (and its scheduler)."""
    # msrun itself, or (several nodes) msrun's process manager with the scheduler on node 0 only
    module = "shufflenet.train.msrun_node" if spec.nodes > 1 else "mindspore.parallel.cluster.run"
    cmd = [sys.executable, "-m", module,
           f"--worker_num={spec.world_size}", f"--local_worker_num={spec.devices}",
           f"--master_addr={spec.master_addr}", f"--master_port={port}",
           f"--log_dir={log_dir}", "--join=True",
           # the toolchain copies rank 0's log to the terminal itself; a rank id outside the
           # world turns off msrun's own `tail -f` (which would also fill msrun.log)
           f"--tail_worker_log={spec.world_size}"]
    if spec.nodes > 1:
        cmd.append(f"--node_rank={spec.node_rank}")
    # msrun starts every task with a bare `python` (it accepts no other program); the PATH
    # of _environment makes that a wrapper executing this interpreter
    return cmd + ["python", *task]


def write_interpreter_wrapper(path: str | os.PathLike, python: str | None = None) -> Path:
    """Write an executable script at ``path`` that runs ``python`` (default: this interpreter).

    A wrapper, not a symlink: a virtualenv's ``python`` linked from outside the
    virtualenv's folder starts the base interpreter (``pyvenv.cfg`` is looked
    up beside the link), and every rank died with ``No module named
    'mindspore'`` wherever the base interpreter lacks it. The script execs the
    interpreter by its own path, so the child's ``sys.executable`` and
    ``sys.prefix`` are the launcher's.
    """
    python = python or sys.executable
    if not python:
        raise ConfigError("this Python does not know its own interpreter (sys.executable is "
                          "empty): cannot start training ranks")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"#!/bin/sh\nexec {shlex.quote(python)} \"$@\"\n"
    if path.is_symlink():
        path.unlink()
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    path.chmod(0o755)
    return path


def _environment(log_dir: Path) -> dict:
    """The ranks' environment: ``python`` on PATH is this interpreter, this checkout importable."""
    env = dict(os.environ)
    env.setdefault("GLOG_v", "3")
    env["PYTHONUNBUFFERED"] = "1"
    bin_dir = log_dir / "bin"
    write_interpreter_wrapper(bin_dir / "python")
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def launch_training(cfg, spec: LaunchSpec, *, resume: bool = False, log_dir: str | os.PathLike,
                    stream=sys.stderr):
    """Train ``cfg`` on ``spec.devices`` local ranks under msrun; returns a :class:`LaunchOutcome`.

    Blocks until every local rank has finished. Raises :class:`LaunchError`
    naming the rank (with its last log lines) when one dies, after stopping
    the others. On node 0 ``outcome.result`` is rank 0's
    :class:`~shufflenet.train.TrainResult` (``model`` is None: the network
    lived in the worker); on other nodes it is None.
    """
    spec.check()
    if not spec.distributed:
        raise ConfigError("launch_training is for more than one rank; call train() for one")
    if spec.nodes > 1 and spec.node_rank > 0 and spec.master_addr in ("127.0.0.1", "localhost") \
            and spec.master_port is None:
        raise ConfigError("--nodes > 1: every node needs the same --master ADDR:PORT "
                          "(node 0's address)")

    open_source(cfg, cfg["train_split"])  # a missing dataset: one line now, not N rank failures
    log_dir = Path(log_dir).resolve()
    if spec.nodes > 1:
        log_dir = log_dir / f"node{spec.node_rank}"
    log_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(log_dir.glob("rank*.pid")) + list(log_dir.glob("rank*.done")) + \
            list(log_dir.glob("worker_*.log")) + [log_dir / "result.json"]:
        stale.unlink(missing_ok=True)
    config = dict(cfg)
    config["distribute"] = True
    if config.get("num_threads") is None:  # the ranks share this machine's cores
        config["num_threads"] = max(1, (os.cpu_count() or 1) // spec.devices)
    spec_path = log_dir / "train_spec.json"
    text = json.dumps({"config": config, "resume": bool(resume), "status_dir": str(log_dir)},
                      default=str, indent=1)
    atomic_write(spec_path, lambda tmp: Path(tmp).write_text(text))
    port = spec.master_port or (free_port() if spec.nodes == 1 else DEFAULT_MASTER_PORT)
    cmd = _msrun_command(spec, port, log_dir, ["-m", "shufflenet.train.worker", str(spec_path)])
    start = time.perf_counter()
    if spec.nodes > 1 and stream is not None:
        print(join_note(spec, port), file=stream, flush=True)
    sup = RankWatcher(spec, cmd, _environment(log_dir), log_dir, stream)
    sup.run()
    shown = ["msrun", *cmd[3:]] if spec.nodes == 1 else ["python", *cmd[1:]]
    outcome = LaunchOutcome(spec, shown, log_dir, rank_logs=sup.rank_logs,
                            seconds=round(time.perf_counter() - start, 2))
    result_path = log_dir / "result.json"
    if spec.node_rank == 0:
        if not result_path.exists():
            raise LaunchError(f"rank 0 finished without writing {result_path}")
        r = json.loads(result_path.read_text())
        outcome.result = TrainResult(
            Path(r["run_dir"]), Path(r["best_ckpt"]) if r["best_ckpt"] else None,
            Path(r["last_ckpt"]) if r["last_ckpt"] else None, r.get("metrics") or {},
            read_metrics(r["run_dir"]), float(r.get("seconds") or 0.0), None)
    return outcome


def run_training(cfg, spec: LaunchSpec | None = None, *, resume: bool = False,
                 log_dir: str | os.PathLike | None = None, stream=sys.stderr) -> LaunchOutcome:
    """Train ``cfg`` the way ``spec`` (or the recipe) asks: in this process, or under msrun.

    The one entry point for ``shufflenet train`` and the pipeline's train
    stage. ``spec`` None lets the recipe decide (:func:`resolve_spec`); the
    note explaining that decision is written to ``stream``. ``log_dir``
    (default ``<ckpt_save_dir>/logs``) receives msrun's and every rank's logs.
    """
    spec, note = resolve_spec(cfg, spec)
    if note and stream is not None:
        print(note, file=stream, flush=True)
    if spec.distributed and under_launcher():
        raise ConfigError("already running under a launcher (msrun/mpirun): drop --devices/--nodes "
                          "or start shufflenet without the launcher")
    if spec.distributed:
        return launch_training(cfg, spec, resume=resume, stream=stream,
                               log_dir=log_dir or Path(cfg["ckpt_save_dir"]) / "logs")
    cfg = type(cfg)(cfg)  # the caller's config is never changed
    if cfg.get("distribute") and not under_launcher():
        cfg["distribute"] = False  # CPU without a launcher: one process, as the note said
    start = time.perf_counter()
    result = train(cfg, resume=resume)
    return LaunchOutcome(spec, [], Path(log_dir or cfg["ckpt_save_dir"]), result=result,
                         seconds=round(time.perf_counter() - start, 2))
