"""Collision resolution and refresh stability, as distributed Spark operations.

Items sharing all L base codes get a final disambiguation code 0, 1, 2, ... ordered by item id
(deterministic). On a refresh with the same tokenizer version, existing rows are kept exactly
as they are, and new items in a group continue after the group's largest code in use, so a new
item never takes a SID already in use (not even one of an item that left the catalogue: its row
stays, keeping its SID reserved). Groups are keyed by the packed base codes (``base_key``).
"""
from __future__ import annotations

import math

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from simcit.sids.base_key import code_columns, key_of_codes
from simcit.sids.sid_format import sid_expression

COLUMNS = ("item_id", "codes", "sid", "tokenizer_version", "created_at")
ROWS_PER_WINDOW_TASK = 2_000_000  # ~100 MB of (item_id, base_key) to sort per task


def window_partitions(rows: int, parallelism: int) -> int:
    """Tasks for the collision window over ``rows`` rows: a multiple of the cores, so every round
    of tasks keeps all of them busy (AQE coalesced 4 shuffle partitions into 3 uneven ones on 2
    cores: the last ran alone), each at most ~``ROWS_PER_WINDOW_TASK`` rows."""
    parallelism = max(1, parallelism)
    return parallelism * max(1, math.ceil(rows / (parallelism * ROWS_PER_WINDOW_TASK)))


def assign(coded: DataFrame, previous: DataFrame | None, levels: int, bits: int, version: str,
           created_at, partitions: int | None = None) -> DataFrame:
    """Rows of the new ``semantic_ids`` table.

    ``coded``: (item_id, base_key) for every item to cover; ``previous``: the current table's rows
    when it was written by the same tokenizer version (else None); ``partitions``: how many tasks
    the collision window runs as (None: Spark's shuffle partitions, coalesced by AQE).
    """
    fresh = coded
    if previous is not None:
        fresh = coded.join(previous.select("item_id"), "item_id", "left_anti")
        offsets = previous.select(
            key_of_codes(F.col("codes"), levels, bits).alias("base_key"),
            F.element_at("codes", levels + 1).alias("d"),
        ).groupBy("base_key").agg((F.max("d") + 1).alias("offset"))
        fresh = fresh.join(offsets, "base_key", "left")
    else:
        fresh = fresh.withColumn("offset", F.lit(0))
    if partitions:
        fresh = fresh.repartition(partitions, "base_key")  # the window needs no other shuffle
    group = Window.partitionBy("base_key").orderBy("item_id")
    d = (F.row_number().over(group) - 1 + F.coalesce(F.col("offset"), F.lit(0))).cast("int")
    codes = F.array(*code_columns(F.col("base_key"), levels, bits), d)
    new_rows = fresh.select(
        "item_id",
        codes.alias("codes"),
        F.lit(version).alias("tokenizer_version"),
        F.lit(created_at).cast("timestamp").alias("created_at"),
    ).withColumn("sid", sid_expression(F.col("codes"), levels + 1)).select(*COLUMNS)
    if previous is None:
        return new_rows
    return previous.select(*COLUMNS).unionByName(new_rows)
