"""Connecting to Ray: a cluster (``--address`` / ``tokenizer.ray_address`` / ``$RAY_ADDRESS``)
or, with none given, a local Ray started in this process (the embedded default)."""
from __future__ import annotations

import logging
import math
import os
from typing import Callable, Optional

# Without the dashboard (not installed here), Ray's state API is unavailable and Ray Train's
# placement-group cleaner logs this warning every few seconds; nothing is wrong otherwise.
_STATE_API_NOISE = "Failed to query Ray Train Controller actor state"


class _DropStateApiNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _STATE_API_NOISE not in record.getMessage()


def quiet_worker_logs() -> None:
    """``worker_process_setup_hook`` of a local Ray: drop the state-API noise above, and Ray
    Train's INFO line per report (it prints the whole metrics dict every epoch; the stage logs
    its own one-line progress). That module's logger is named after its file path."""
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").addFilter(
        _DropStateApiNoise())
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except ImportError:  # another Ray Train layout: keep its logging as it is
        pass


# Ray Train's controller polls its workers every 2 s by default, and a worker's ``report`` waits
# until the previous one was collected (a queue of one): every epoch after the first waited up to
# 2 s, more than a whole tokenizer epoch on Scientific or NYC (0.5 s). 0.25 s costs the controller
# a few cheap actor calls per second. An interval set in the environment is kept.
_POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
_POLL_SECONDS = "0.25"


def _job_env() -> dict[str, str]:
    return {_POLL_ENV: os.environ.get(_POLL_ENV, _POLL_SECONDS)}


def connect_ray(address: Optional[str] = None, min_local_cpus: float = 0.0,
                log: Callable[[str], None] = print) -> bool:
    """Make sure this process is connected to Ray; True if it started a local Ray (which the
    caller should shut down). A local Ray gets max(cores, ``min_local_cpus``) logical CPUs:
    training workers reserve theirs, and Ray Data's read tasks need at least one left over."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        log(f"connecting to the Ray cluster at {address}")
        ray.init(address=address, log_to_driver=True, runtime_env={"env_vars": _job_env()})
        return False
    num_cpus = max(os.cpu_count() or 1, math.ceil(min_local_cpus))
    log(f"starting a local Ray ({num_cpus} CPUs)")
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True,
             runtime_env={"worker_process_setup_hook": "simcit.train.ray_runtime.quiet_worker_logs",
                          "env_vars": _job_env()})
    return True


def quiet_ray_data() -> None:
    """No per-operator progress bars (the stage logs one line per epoch instead)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
