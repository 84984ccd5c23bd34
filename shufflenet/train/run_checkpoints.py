"""What a run keeps on disk, and the policy deciding which epoch checkpoints stay.

Run directory (``ckpt_save_dir``)::

    <model>-<epoch>_<step>.ckpt   epoch checkpoints (weights), pruned by the policy
    <model>_best.ckpt             the best epoch so far by :func:`epoch_metric` (weights)
    last.ckpt                     weights + optimizer state + position: what --resume reads
    checkpoints.json              the manager's own index (rewritten atomically)
    metrics.jsonl                 one JSON line per epoch

Every file is written atomically and carries the metadata contract inside
(``shufflenet.checkpoint``); file names are never parsed.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..checkpoint import save_checkpoint
from ..fileio import atomic_write

log = logging.getLogger(__name__)

LAST = "last.ckpt"
INDEX = "checkpoints.json"
METRICS = "metrics.jsonl"


def epoch_metric(row: dict) -> float | None:
    """What ranks a run's epochs (higher is better) for ``_best`` and ``top_k``, from its
    ``metrics.jsonl`` row: minus the share of val images expected lost against the run's
    teacher when it validated against one (QAT distillation: its goal is an int8 model that
    decides as fp32 decides; the int8 search ranks its trials by the same measure, which
    does not move by whole images as val top-1 does on a small split), else val top-1; None
    for an epoch not validated."""
    key = ranked_by(row)
    if key is None:
        return None
    return -float(row[key]) if key == "val_expected_lost" else float(row[key])


def ranked_by(row: dict) -> str | None:
    """The key of ``row`` that :func:`epoch_metric` ranks by (None: not validated)."""
    for key in ("val_expected_lost", "val_top1"):
        if row.get(key) is not None:
            return key
    return None


class CheckpointManager:
    """Keeps epoch checkpoints by ``latest_k`` or ``top_k`` (``keep_checkpoint_max``).

    ``top_k`` ranks by the metric given to :meth:`save_epoch` (:func:`epoch_metric`, or
    minus the training loss when there is no validation).
    """

    def __init__(self, run_dir: str | os.PathLike, model_name: str, policy: str = "latest_k",
                 keep_max: int = 10, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.model_name = model_name
        self.policy = "none" if str(policy).lower() == "none" else policy
        self.keep_max = max(1, int(keep_max))
        self.enabled = enabled
        self.entries: list[dict] = []  # {"file", "epoch", "metric"}
        self.best: dict | None = None
        self.rank_by: str | None = None  # what the metrics are (see ranked_by)
        index = self.run_dir / INDEX
        if index.exists():
            state = json.loads(index.read_text())
            self.entries, self.best = state.get("entries", []), state.get("best")
            # an index written before the rule had a name ranked by val top-1
            self.rank_by = state.get("rank_by", "val_top1" if self.best else None)

    @property
    def best_path(self) -> Path:
        return self.run_dir / f"{self.model_name}_best.ckpt"

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST

    def _write_index(self) -> None:
        text = json.dumps({"entries": self.entries, "best": self.best, "rank_by": self.rank_by},
                          indent=1)
        atomic_write(self.run_dir / INDEX, lambda tmp: Path(tmp).write_text(text))

    def save_epoch(self, params, epoch: int, step: int, metric: float | None, meta: dict,
                   epoch_file: bool = True, rank_by: str | None = None) -> Path | None:
        """Save an epoch checkpoint (unless ``epoch_file`` is False), prune by policy,
        refresh ``_best``; returns the epoch checkpoint's path. ``rank_by`` names what
        ``metric`` is: a resumed run whose earlier epochs were ranked by another measure
        starts its best and its ranking afresh (two measures' values do not compare)."""
        if not self.enabled:
            return None
        if metric is not None and rank_by and self.rank_by not in (None, rank_by):
            log.warning("epochs were ranked by %s, this one by %s: the best checkpoint and "
                        "the top_k ranking start again from epoch %d", self.rank_by, rank_by,
                        epoch)
            self.best = None
            for e in self.entries:
                e["metric"] = None
        if metric is not None and rank_by:
            self.rank_by = rank_by
        path = None
        if self.policy != "none" and epoch_file:
            path = self.run_dir / f"{self.model_name}-{epoch}_{step}.ckpt"
            save_checkpoint(params, path, meta)
            self.entries = [e for e in self.entries if e["file"] != path.name]
            self.entries.append({"file": path.name, "epoch": epoch, "metric": metric})
            self._prune()
        if metric is not None and (self.best is None or metric > self.best["metric"]):
            save_checkpoint(params, self.best_path, meta)
            self.best = {"file": self.best_path.name, "epoch": epoch, "metric": metric}
        self._write_index()
        return path

    def _prune(self) -> None:
        if len(self.entries) <= self.keep_max:
            return
        if self.policy == "top_k":
            ranked = sorted(self.entries, key=lambda e: (-(e["metric"] if e["metric"] is not None
                                                           else float("-inf")), -e["epoch"]))
            keep = ranked[: self.keep_max]
        else:  # latest_k
            keep = sorted(self.entries, key=lambda e: e["epoch"])[-self.keep_max:]
        names = {e["file"] for e in keep}
        for e in self.entries:
            if e["file"] not in names:
                try:
                    (self.run_dir / e["file"]).unlink()
                except FileNotFoundError:
                    pass
        self.entries = sorted(keep, key=lambda e: e["epoch"])

    def save_last(self, params, meta: dict) -> Path | None:
        """The resumable state: weights, optimizer moments, LR position, epoch, step."""
        if not self.enabled:
            return None
        return save_checkpoint(params, self.last_path, meta)

    def append_metrics(self, row: dict) -> None:
        """Append one JSON line to ``metrics.jsonl`` (flushed and fsynced)."""
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` (empty if none)."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
