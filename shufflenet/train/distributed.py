"""Data-parallel setup through MindSpore's own collective layer.

Launch with MindSpore's launchers, one process per device:

    msrun --worker_num=8 --local_worker_num=8 python -m toolchain train -c RECIPE --distribute
    mpirun -n 8 shufflenet train -c RECIPE --distribute

Each rank reads its shard of every epoch; gradients are averaged
(``gradients_mean``) before the update, so all ranks hold identical weights;
only rank 0 writes checkpoints and metrics.
"""
from __future__ import annotations

import logging

from ..errors import ConfigError

log = logging.getLogger(__name__)


def init_data_parallel() -> tuple[int, int]:
    """Join the process group and switch to DATA_PARALLEL; returns ``(rank, world size)``."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except Exception as exc:  # MindSpore raises RuntimeError/ValueError without a launcher
        raise ConfigError(
            "--distribute needs a launcher: run `msrun --worker_num=N --local_worker_num=N "
            f"python -m toolchain train ... --distribute` (or `mpirun -n N shufflenet train ...`); "
            "init failed: "
            f"{str(exc).splitlines()[0][:200]}") from None
    rank, world = get_rank(), get_group_size()
    ms.reset_auto_parallel_context()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                 gradients_mean=True, device_num=world)
    log.info("data-parallel rank %d of %d", rank, world)
    return rank, world
