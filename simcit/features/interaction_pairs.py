"""One pass over every user's time-ordered **training** interactions -> cf and mobility pair counts.

Both graph views learned from interactions come from pairs inside one user's sequence:
  * cf co-occurrence: j follows i within ``window`` positions (i != j);
  * mobility: j is the very next check-in after i, at most ``max_gap_s`` seconds later (i != j).
Spark collects each user's (pos, nid, ts) events into one sorted array (the interactions are
already partitioned by user by the window that computed ``pos``); a vectorised numpy kernel in
a Python worker turns a whole Arrow batch of users into pairs and pre-aggregates them, and one
native groupBy on int64 keys sums the counts. Pairs are unordered: a row (src < dst) carries the
symmetric count c_ij + c_ji, exactly what the old per-direction counts summed to after
symmetrisation; :func:`symmetric_rows` expands them to both directions.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

PAIR_SCHEMA = T.StructType(
    [
        T.StructField("src", T.LongType()),
        T.StructField("dst", T.LongType()),
        T.StructField("cf_c", T.DoubleType()),
        T.StructField("mob_c", T.DoubleType()),
    ]
)


def sequence_pair_counts(
    lengths: np.ndarray, nid: np.ndarray, ts: np.ndarray, window: int, max_gap_s: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unordered pair counts of concatenated user sequences.

    ``lengths[u]`` events of user u follow each other in ``nid``/``ts`` (each user's part in
    chronological order). Returns (src, dst, cf_count, mobility_count) with src < dst, one row
    per distinct pair. ``window`` 0 / ``max_gap_s`` None switch a kind off.
    """
    nid = np.asarray(nid, dtype=np.int64)
    ts = np.asarray(ts, dtype=np.float64)
    user = np.repeat(np.arange(len(lengths)), np.asarray(lengths, dtype=np.int64))
    lo_parts, hi_parts, kinds = [], [], []
    n = len(nid)
    for offset in range(1, window + 1):
        if offset >= n:
            break
        ok = (user[offset:] == user[:-offset]) & (nid[offset:] != nid[:-offset])
        a, b = nid[:-offset][ok], nid[offset:][ok]
        lo_parts.append(np.minimum(a, b)), hi_parts.append(np.maximum(a, b)), kinds.append(np.zeros(len(a), np.int8))
    if max_gap_s is not None and n > 1:
        # NaN gaps (missing timestamps) compare False: no move, as the old lag() filter did.
        ok = (user[1:] == user[:-1]) & (nid[1:] != nid[:-1]) & ((ts[1:] - ts[:-1]) <= max_gap_s)
        a, b = nid[:-1][ok], nid[1:][ok]
        lo_parts.append(np.minimum(a, b)), hi_parts.append(np.maximum(a, b)), kinds.append(np.ones(len(a), np.int8))
    if not lo_parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    lo, hi, kind = np.concatenate(lo_parts), np.concatenate(hi_parts), np.concatenate(kinds)
    if len(lo) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    if hi.max() < 2**31 and lo.min() >= 0:
        keys, inverse = np.unique((lo << 32) | hi, return_inverse=True)
        src, dst = keys >> 32, keys & 0xFFFFFFFF
    else:
        keys, inverse = np.unique(np.stack([lo, hi], axis=1), axis=0, return_inverse=True)
        src, dst = keys[:, 0], keys[:, 1]
    inverse = inverse.ravel()
    cf = np.bincount(inverse, weights=(kind == 0).astype(float), minlength=len(src))
    mob = np.bincount(inverse, weights=(kind == 1).astype(float), minlength=len(src))
    return src.astype(np.int64), dst.astype(np.int64), cf, mob


def interaction_pair_counts(
    train: DataFrame, index: DataFrame, window: int, max_gap_s: float | None
) -> DataFrame:
    """(src, dst, cf_c, mob_c), src < dst int64 node ids, summed over all users.

    ``train`` (user_id, item_id, ts, pos) must hold the training part only
    (:func:`simcit.splits.training_interactions`); ``index`` (item_id, nid) maps the items.
    """
    events = train.join(index, "item_id").select(
        "user_id", F.struct("pos", "nid", F.col("ts").cast("double").alias("ts")).alias("e")
    )
    seqs = events.groupBy("user_id").agg(F.sort_array(F.collect_list("e")).alias("ev")).select("ev")
    arrow_schema = pa.schema(
        [("src", pa.int64()), ("dst", pa.int64()), ("cf_c", pa.float64()), ("mob_c", pa.float64())]
    )

    def pairs(batches):
        for batch in batches:
            lists = batch.column(0)
            if len(lists) == 0:
                continue
            lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
            flat = lists.flatten()
            fields = {f.name: a for f, a in zip(flat.type, flat.flatten())}
            src, dst, cf, mob = sequence_pair_counts(
                lengths,
                fields["nid"].to_numpy(zero_copy_only=False),
                fields["ts"].to_numpy(zero_copy_only=False),
                window,
                max_gap_s,
            )
            if len(src):
                yield pa.RecordBatch.from_arrays(
                    [pa.array(src), pa.array(dst), pa.array(cf), pa.array(mob)], schema=arrow_schema
                )

    counted = seqs.mapInArrow(pairs, PAIR_SCHEMA)
    return counted.groupBy("src", "dst").agg(F.sum("cf_c").alias("cf_c"), F.sum("mob_c").alias("mob_c"))


def symmetric_rows(pairs: DataFrame, value: str, alias: str = "c") -> DataFrame:
    """(src, dst, alias) in both directions for the unordered pairs with ``value`` > 0."""
    kept = pairs.where(F.col(value) > 0).select("src", "dst", F.col(value).alias(alias))
    swapped = kept.select(F.col("dst").alias("src"), F.col("src").alias("dst"), alias)
    return kept.unionByName(swapped)
