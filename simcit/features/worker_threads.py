"""Thread budget of an encoder inside a Spark Python worker.

Spark runs one Python worker per concurrent task; letting each of them use every core would
oversubscribe the CPU. ``SIMCIT_WORKER_THREADS`` (default 1) sets torch's intra-op threads.
"""
from __future__ import annotations

import os


def configure_torch_threads() -> None:
    import torch

    threads = int(os.environ.get("SIMCIT_WORKER_THREADS", "1"))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
