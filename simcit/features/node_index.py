"""Dense int64 node ids for the graph views.

Every edge list, aggregation and eigensolver pass of the geo and cf views runs on int64 keys;
string item ids (and H3 cell nodes) are mapped once here and joined back only for the final
embedding rows. ``nid`` is ``offset`` + the rank of the value in sorted order (optionally by
another column first), so the ids (and the hash-derived random test block of the eigensolver)
are identical on every run and on every partitioning. The pipeline numbers items in the order
of their H3 cell, then of their id: nearby POIs get nearby ids, so the eigensolver's row
blocks (contiguous id ranges) mostly read their own rows. Built without collecting the table:
a range-partitioned sort, one small per-partition count (a few rows reach the driver), then a
row-local offset.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

_LOCAL_BITS = 33  # monotonically_increasing_id = partition index << 33 | row index in partition


def dense_index(
    values: DataFrame, column: str, offset: int = 0, order_by: str | None = None
) -> tuple[DataFrame, int]:
    """((column, nid) for the distinct non-null values of ``column``, how many there are).

    Ranked by ``order_by`` first when given (nulls last; one value per ``column`` value), then
    by ``column``."""
    keys = [column] if order_by is None else [order_by, column]
    order = [F.col(column)] if order_by is None else [F.col(order_by).asc_nulls_last(), F.col(column)]
    ranked = (
        values.select(*keys)
        .where(F.col(column).isNotNull())
        .distinct()
        .orderBy(*order)
        .withColumn("_mid", F.monotonically_increasing_id())
    )
    # Fix the partition layout the ids are derived from (it must not change between uses).
    ranked = ranked.localCheckpoint(eager=True)
    part = F.shiftright(F.col("_mid"), _LOCAL_BITS)
    counts = sorted((r["p"], r["n"]) for r in ranked.groupBy(part.alias("p")).agg(F.count(F.lit(1)).alias("n")).collect())
    starts: dict[int, int] = {}
    total = 0
    for p, n in counts:  # one row per non-empty partition
        starts[p] = offset + total
        total += n
    if not starts:
        return ranked.select(column, F.lit(0).cast("long").alias("nid")), 0
    start = _lookup(part, starts)
    local = F.col("_mid").bitwiseAND(F.lit((1 << _LOCAL_BITS) - 1))
    return ranked.select(column, (start + local).cast("long").alias("nid")), total


def _lookup(key: Column, table: dict[int, int]) -> Column:
    m = F.create_map(*[F.lit(v).cast("long") for kv in table.items() for v in kv])
    return F.element_at(m, key)
