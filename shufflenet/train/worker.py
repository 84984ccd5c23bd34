"""One data-parallel training rank, as started by :mod:`shufflenet.train.launch` under msrun.

    python -m shufflenet.train.worker SPEC.json

``SPEC.json`` holds the full training config and whether to resume. The rank
writes ``rank<R>.pid`` into the status folder when it starts (the launcher
watches these to notice a dead rank at once) and ``rank<R>.done`` when it
ends cleanly; rank 0 also writes ``result.json`` (checkpoint paths, final
metrics). msrun runs the same command once more as its scheduler
(``MS_ROLE=MS_SCHED``): that process only joins the cluster.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..config import make_config
from ..errors import ShuffleNetError
from ..fileio import atomic_write
from .trainer import train


def _write_json(path: Path, data) -> None:
    text = json.dumps(data, indent=1, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    status = Path(spec["status_dir"])
    scheduler = os.environ.get("MS_ROLE") == "MS_SCHED"
    env_rank = os.environ.get("RANK_ID")
    if not scheduler and env_rank is not None:
        (status / f"rank{env_rank}.pid").write_text(str(os.getpid()))

    try:
        cfg = make_config(spec["config"])
        cfg["distribute"] = True
        result = train(cfg, resume=bool(spec.get("resume")))
    except ShuffleNetError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    if scheduler:
        return 0
    from mindspore.communication import get_rank

    rank = get_rank()
    if rank == 0:
        _write_json(status / "result.json", {
            "run_dir": str(result.run_dir),
            "best_ckpt": str(result.best_ckpt) if result.best_ckpt else None,
            "last_ckpt": str(result.last_ckpt) if result.last_ckpt else None,
            "metrics": result.metrics, "epochs": len(result.history),
            "seconds": result.seconds})
    (status / f"rank{rank}.done").write_text("ok")
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
