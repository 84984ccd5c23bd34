"""The pipeline on a node other than 0: take part in training, then leave the rest to node 0.

Every node runs the same ``shufflenet pipeline ... --nodes M --node-rank R``
command. Node 0 keeps the run record, writes the checkpoints (global rank 0
lives there) and runs validate/export/parity/bench. Another node has no
record to consult, so it keeps a small state file of its own
(``train_node<R>.json``: inputs hash and how its last attempt ended) to make
the same resume decision node 0 makes: resume only an interrupted run of the
same inputs whose ``last.ckpt`` it can read (a shared run directory).
"""
from __future__ import annotations

import json
from pathlib import Path

from shufflenet.config import recipe_dict
from shufflenet.fileio import atomic_write
from shufflenet.train.launch import launch_training

from .record import stable_hash
from .stage_cache import log


def _state_path(run_dir: Path, node_rank: int) -> Path:
    return run_dir / f"train_node{node_rank}.json"


def _save(path: Path, state: dict) -> None:
    text = json.dumps(state, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def train_on_secondary_node(cfg, spec, run_dir: Path, log_dir: Path) -> None:
    """Run this node's ranks of the training; returns None (node 0 continues the pipeline)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = recipe_dict(cfg)
    recipe.pop("ckpt_save_dir", None)
    digest = stable_hash({"recipe": recipe, "world_size": spec.world_size})
    path = _state_path(run_dir, spec.node_rank)
    prev = json.loads(path.read_text()) if path.exists() else {}
    last = Path(cfg.ckpt_save_dir) / "last.ckpt"
    resume = (last.exists() and prev.get("status") in ("running", "failed")
              and prev.get("inputs_hash") == digest)
    if resume:
        log(f"[train] node {spec.node_rank}: resuming the interrupted run from {last}")
    _save(path, {"inputs_hash": digest, "status": "running"})
    try:
        launch_training(cfg, spec, resume=resume, log_dir=log_dir)
    except BaseException:
        _save(path, {"inputs_hash": digest, "status": "failed"})
        raise
    _save(path, {"inputs_hash": digest, "status": "done"})
    log(f"[train] node {spec.node_rank} of {spec.nodes}: training done; node 0 writes the "
        f"checkpoints and runs validate/export/parity/bench")
    return None
