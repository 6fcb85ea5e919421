"""Spark's Python worker daemon, with torch and the inference code imported before it forks.

Spark starts one daemon per executor and forks a Python worker from it per concurrent task
(``spark.python.worker.reuse`` keeps them). Every worker that runs a model imports torch (~1.5 s
of CPU each) unless the daemon already has: forked children inherit the parent's modules
copy-on-write. Importing creates no thread pools (torch starts them on first use), so forking
afterwards is safe. Enabled by ``spark.python.daemon.module`` in ``simcit.spark_session``; set
it back to ``pyspark.daemon`` in ``spark.conf`` to turn it off.
"""
import numpy  # noqa: F401
import pyarrow  # noqa: F401
import pyarrow.parquet  # noqa: F401
import torch  # noqa: F401

import simcit.sids.spark_inference  # noqa: F401  (pulls the tokenizer model code)
import simcit.tokenizer  # noqa: F401

from pyspark import daemon

if __name__ == "__main__":
    daemon.manager()
