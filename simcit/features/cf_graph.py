"""cf view: item co-occurrence in training sequences -> PPMI -> truncated SVD.

Pairs (i, j) co-occur when j follows i within ``window`` positions in a user's **training
part**. Pairs are generated inside each user's ordered array, so the work is n x window rows,
never n^2 per user, and no self-join is shuffled. PPMI(i, j) = max(0, log(c_ij * N / (c_i c_j))).
The symmetric PPMI matrix is factorised with the distributed randomised eigensolver
(U |Sigma|^(1/2), the SVD of a symmetric matrix). Items with no co-occurrence get null.
"""
from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from simcit.config import CFViewConfig
from simcit.features.distributed_eigen import top_eigen_embedding


def cooccurrence_counts(train: DataFrame, window: int) -> DataFrame:
    """Symmetric counts c_ij of j following i within ``window`` positions (i != j)."""
    # One array per user (the window that computed ``pos`` already partitioned by user, so no
    # extra shuffle), pairs generated inside the array: no n x window join.
    seqs = train.groupBy("user_id").agg(F.array_sort(F.collect_list(F.struct("pos", "item_id"))).alias("ev"))
    pairs = F.flatten(
        F.transform(
            F.sequence(F.lit(1), F.lit(window)),
            lambda o: F.when(
                F.size("ev") > o,
                F.transform(
                    F.sequence(F.lit(0), F.size("ev") - o - 1),
                    lambda i: F.struct(
                        F.element_at("ev", i + 1)["item_id"].alias("src"),
                        F.element_at("ev", i + o + 1)["item_id"].alias("dst"),
                    ),
                ),
            ).otherwise(F.array().cast("array<struct<src:string,dst:string>>")),
        )
    )
    exploded = seqs.select(F.explode(pairs).alias("p")).select("p.src", "p.dst").where(F.col("src") != F.col("dst"))
    counts = exploded.groupBy("src", "dst").agg(F.count(F.lit(1)).cast("double").alias("c"))
    swapped = counts.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "c")
    return counts.unionByName(swapped).groupBy("src", "dst").agg(F.sum("c").alias("c"))


def ppmi(counts: DataFrame, min_count: int) -> DataFrame:
    counts = counts.where(F.col("c") >= min_count)
    marginals = counts.groupBy(F.col("src").alias("id")).agg(F.sum("c").alias("m"))
    total = counts.agg(F.sum("c")).first()[0] or 0.0  # one scalar reaches the driver
    m_src = marginals.select(F.col("id").alias("src"), F.col("m").alias("m_src"))
    m_dst = marginals.select(F.col("id").alias("dst"), F.col("m").alias("m_dst"))
    scored = counts.join(m_src, "src").join(m_dst, "dst").select(
        "src", "dst", F.log(F.col("c") * F.lit(total) / (F.col("m_src") * F.col("m_dst"))).alias("w")
    )
    return scored.where(F.col("w") > 0)


def cf_embeddings(train: DataFrame, cfg: CFViewConfig, log: Callable[[str], None]) -> DataFrame:
    """(item_id, cf_emb) for items that co-occur with another item in training sequences."""
    matrix = ppmi(cooccurrence_counts(train, cfg.window), cfg.min_count)
    nodes = matrix.select(F.col("src").alias("id")).distinct()
    emb = top_eigen_embedding(matrix, nodes, cfg.dim, cfg.oversample, cfg.power_iters, cfg.seed, log)
    return emb.select(F.col("id").alias("item_id"), F.col("emb").alias("cf_emb"))
