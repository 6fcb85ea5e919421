"""cf view: item co-occurrence in training sequences -> PPMI -> truncated SVD.

Pairs (i, j) co-occur when j follows i within ``window`` positions in a user's **training
part**; the counts come from the one per-user pass of :mod:`simcit.features.interaction_pairs`
(shared with the mobility edges of the geo view), on int64 node ids. c_ij is symmetric
(occurrences of i..j and j..i). PPMI(i, j) = max(0, log(c_ij * N / (c_i c_j))), computed on the
eigensolver's CSR row blocks (marginals c_i are row sums, gathered for the columns). The
symmetric PPMI matrix is factorised with the distributed randomised eigensolver
(U |Sigma|^(1/2), the SVD of a symmetric matrix). Items with no positive PPMI entry get null.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from simcit.config import CFViewConfig
from simcit.features.distributed_eigen import BlockMatrix, top_eigen_embedding
from simcit.features.interaction_pairs import symmetric_rows


def cooccurrence_counts(pairs: DataFrame) -> DataFrame:
    """Symmetric counts (src, dst, c) of the co-occurring pairs (both directions, i != j)."""
    return symmetric_rows(pairs, "cf_c", "c")


def ppmi_block(total: float):
    """Block function of PPMI(i, j) = max(0, log(c_ij * N / (c_i c_j))), c_i the row sums."""

    def fn(rows: np.ndarray, cols: np.ndarray, c: sp.csr_matrix, c_rows: np.ndarray, c_cols: np.ndarray) -> sp.csr_matrix:
        coo = c.tocoo()
        with np.errstate(divide="ignore"):
            w = np.log(coo.data * total / (c_rows[coo.row] * c_cols[coo.col]))
        keep = w > 0
        return sp.csr_matrix((w[keep], (coo.row[keep], coo.col[keep])), shape=c.shape)

    return fn


def cf_matrix(pairs: DataFrame, cfg: CFViewConfig) -> BlockMatrix:
    """The symmetric PPMI matrix of the co-occurrence counts (>= ``min_count``), as row blocks."""
    counts = cooccurrence_counts(pairs.where(F.col("cf_c") >= cfg.min_count))
    matrix = BlockMatrix(counts.withColumnRenamed("c", "w"))
    total = matrix.row_sums().agg(F.sum("s")).first()[0] or 0.0  # one scalar reaches the driver
    matrix.transform(ppmi_block(total))
    return matrix


def cf_embeddings(
    pairs: DataFrame, index: DataFrame, cfg: CFViewConfig, log: Callable[[str], None]
) -> DataFrame:
    """(item_id, cf_emb) for items that co-occur with another item in training sequences.

    ``pairs``: :func:`simcit.features.interaction_pairs.interaction_pair_counts` of the training
    part; ``index`` (item_id, nid) maps node ids back to items.
    """
    t = time.time()
    matrix = cf_matrix(pairs, cfg)
    log(f"cf graph: PPMI matrix built in {time.time() - t:.1f}s")
    emb = top_eigen_embedding(matrix, cfg.dim, cfg.oversample, cfg.power_iters, cfg.seed, log)
    return emb.join(index.withColumnRenamed("nid", "id"), "id").select("item_id", F.col("emb").alias("cf_emb"))
