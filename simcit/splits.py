"""Leave-one-out splitting, shared by ``sequences`` and by every view learned from interactions.

Per user, interactions are ordered by (ts, seq_no, item_id): the source order breaks timestamp
ties deterministically. With n >= 3 interactions the last one is the test target, the one before
the valid target, the rest is the training part. Users with fewer than 3 interactions have a
training part only. The CF view and the mobility graph read :func:`training_interactions` and so
never see a valid or test target.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

MIN_FOR_HOLDOUT = 3


def ordered(interactions: DataFrame, collapse_repeats: bool = False) -> DataFrame:
    """Add ``pos`` (0-based chronological rank) and ``n`` (user's count) to each interaction."""
    order = Window.partitionBy("user_id").orderBy("ts", "seq_no", "item_id")
    df = interactions
    if collapse_repeats:
        prev = F.lag("item_id").over(order)
        df = df.withColumn("__prev", prev).where(F.col("__prev").isNull() | (F.col("__prev") != F.col("item_id")))
        df = df.drop("__prev")
    df = df.withColumn("pos", F.row_number().over(order) - 1)
    return df.withColumn("n", F.count(F.lit(1)).over(Window.partitionBy("user_id")))


def training_interactions(interactions: DataFrame, collapse_repeats: bool = False) -> DataFrame:
    """Only the training part of every user's history (with ``pos``/``n`` columns)."""
    df = ordered(interactions, collapse_repeats)
    return df.where((F.col("n") < MIN_FOR_HOLDOUT) | (F.col("pos") < F.col("n") - 2))
