"""Build the SparkSession every job uses (local by default, any master under spark-submit)."""
from __future__ import annotations

import os
import sys

from simcit.config import SparkConfig
from simcit.jvm_class_archive import ClassArchive, enabled_by_environment

# Embedded (local) mode: the JVM is the whole executor. Short batch jobs on a few cores lose more
# to the C2 JIT and G1's concurrent threads (they compete with the Python workers for the same
# cores) than they gain: C1 + parallel GC made assign-ids at 1M rows 54 s -> 46 s, and still
# 31 s vs 38 s with the class archive (benchmarks/RESULTS.md §2). Under spark-submit the JVM is
# already up and these do not apply.
EMBEDDED_JVM_OPTIONS = "-Dio.netty.tryReflectionSetAccessible=true -XX:TieredStopAtLevel=1 -XX:+UseParallelGC"


def embedded_class_archive(cfg: SparkConfig) -> ClassArchive | None:
    """The JVM class archive an embedded session of ``cfg`` uses (None: off, or options overridden)."""
    if not (cfg.class_archive and enabled_by_environment()) or "spark.driver.extraJavaOptions" in cfg.conf:
        return None
    return ClassArchive.for_embedded_spark(EMBEDDED_JVM_OPTIONS, cfg.driver_memory)


def get_spark(cfg: SparkConfig, app_name: str):
    """Return the active session (spark-submit) or start one from ``cfg`` (embedded default)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Workers must run the same interpreter as the driver (the project's venv).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the master comes from the command line; only default it when unset.
    # Under spark-submit the JVM already holds --master/--conf; only default them when embedded.
    under_submit = "PYSPARK_GATEWAY_PORT" in os.environ
    if not under_submit:
        builder = builder.master(cfg.master)
    conf = {
        "spark.driver.memory": cfg.driver_memory,
        "spark.sql.shuffle.partitions": str(cfg.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        # delta-rs and pyarrow read microsecond timestamps, not INT96.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(cfg.arrow_batch_rows),
        "spark.sql.adaptive.enabled": "true",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "true",
        "spark.python.worker.reuse": "true",
        # workers fork from a daemon that already imported torch (simcit/spark_worker_daemon.py)
        "spark.python.daemon.module": "simcit.spark_worker_daemon",
        "spark.driver.extraJavaOptions": EMBEDDED_JVM_OPTIONS,
        **cfg.conf,
    }
    archive = None
    if not under_submit and SparkContext._gateway is None:  # options only act on a new JVM
        archive = embedded_class_archive(cfg)
        if archive is not None:
            conf["spark.driver.extraJavaOptions"] += " " + archive.java_options()
    for key, value in conf.items():
        if under_submit and key == "spark.driver.memory":
            continue  # fixed at JVM start by spark-submit
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    if archive is not None:
        archive.install_at_exit(spark)  # no-op unless this session is the one writing it
    return spark

