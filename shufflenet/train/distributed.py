"""Data-parallel setup through MindSpore's own collective layer.

``shufflenet train --devices N`` (and the pipeline) start msrun themselves
(:mod:`shufflenet.train.launch`); MindSpore's launchers started by hand work too:

    msrun --worker_num=8 --local_worker_num=8 python -m toolchain train -c RECIPE --distribute
    mpirun -n 8 shufflenet train -c RECIPE --distribute

Each rank reads its shard of every epoch; gradients are averaged
(``gradients_mean``) before the update, so all ranks hold identical weights;
only rank 0 writes checkpoints and metrics.
"""
from __future__ import annotations

import logging
import os

from ..device import detect_device_target, normalize_device_target
from ..errors import ConfigError

log = logging.getLogger(__name__)

# set in every process that msrun, mpirun or a rank table started
_LAUNCHER_ENV = ("MS_ROLE", "MS_WORKER_NUM", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "RANK_TABLE_FILE")


def under_launcher() -> bool:
    """True inside a process that msrun/mpirun (or a rank table) started."""
    return any(os.environ.get(k) for k in _LAUNCHER_ENV)


def data_parallel_world(cfg) -> tuple[int, int]:
    """``(rank, world size)`` for this process: joins the process group when ``distribute``.

    ``distribute`` without a launcher trains in one process on CPU (with a
    warning saying so); on Ascend/GPU it is an error pointing at ``--devices``.
    """
    if not cfg.get("distribute"):
        return 0, 1
    if under_launcher():
        return init_data_parallel()

    target = normalize_device_target(cfg.get("device_target")) or detect_device_target()
    if target == "CPU":
        log.warning("distribute: True on CPU without a launcher: training in one process "
                    "(shufflenet train --devices N starts N data-parallel ranks)")
        return 0, 1
    raise ConfigError(f"distribute: True on {target} needs one process per device: use "
                      f"`shufflenet train --devices N` (or shufflenet.train.launch.launch_training)")


def init_data_parallel() -> tuple[int, int]:
    """Join the process group and switch to DATA_PARALLEL; returns ``(rank, world size)``."""
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except Exception as exc:  # MindSpore raises RuntimeError/ValueError without a launcher
        if under_launcher():
            raise ConfigError("joining the data-parallel group failed (is every rank/node started, "
                              "and the master address and port the same everywhere?): "
                              f"{str(exc).splitlines()[0][:300]}") from None
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
