"""Spark execution of :mod:`geo.randomized_eigen`: top eigenvectors of a graph given as edges.

Dense n x k blocks live as DataFrames ``(id, c0 .. c{k-1})``. A product M @ X is one join of
the edge list with X on ``dst`` plus one native grouped sum by ``src`` (map-side combined);
Gram matrices are summed per partition in numpy and only k x k matrices reach the driver.
Nothing of size n is ever collected, so the driver's memory does not grow with the graph.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from geo.randomized_eigen import cross_gram, gram, orthonormalizer, ritz_projection


def _cols(k: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{j}" for j in range(k)]


def _materialize(df: DataFrame) -> DataFrame:
    # Cuts the lineage of the iteration (each step would otherwise replay all previous ones).
    return df.localCheckpoint(eager=True)


def random_block(nodes: DataFrame, k: int, seed: int) -> DataFrame:
    """Omega: uniform(-1, 1) entries derived from a hash of (node id, column): no shuffle,
    identical on every run and on every partitioning."""
    cols = [
        ((F.xxhash64(F.col("id"), F.lit(seed * 7919 + j)) % 2001) / 2000.0).alias(c)
        for j, c in enumerate(_cols(k))
    ]
    return nodes.select("id", *cols)


def multiply(edges: DataFrame, block: DataFrame, k: int) -> DataFrame:
    """(M @ X) as a block: sum_j w_ij * X_j for every row i with at least one edge."""
    joined = edges.join(block.withColumnRenamed("id", "dst"), on="dst")
    sums = [F.sum(F.col("w") * F.col(c)).alias(c) for c in _cols(k)]
    return joined.groupBy(F.col("src").alias("id")).agg(*sums)


def _sum_matrices(df: DataFrame, k_rows: int, k_cols: int, fn: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    schema = T.StructType([T.StructField("m", T.ArrayType(T.DoubleType()))])

    def partial(batches):
        acc = np.zeros((k_rows, k_cols))
        for pdf in batches:
            if len(pdf):
                acc += fn(pdf)
        yield pd.DataFrame({"m": [acc.ravel()]})

    total = np.zeros((k_rows, k_cols))
    for row in df.mapInPandas(partial, schema).collect():  # one k x k matrix per partition
        total += np.asarray(row["m"]).reshape(k_rows, k_cols)
    return total


def block_gram(block: DataFrame, k: int) -> np.ndarray:
    cols = _cols(k)
    return _sum_matrices(block, k, k, lambda pdf: gram(pdf[cols].to_numpy()))


def times_small(block: DataFrame, k_in: int, small: np.ndarray) -> DataFrame:
    """X @ S for a small dense S (k_in x k_out), row-local."""
    k_out = small.shape[1]
    cols_in, cols_out = _cols(k_in), _cols(k_out)
    schema = T.StructType(
        [T.StructField("id", T.StringType())] + [T.StructField(c, T.DoubleType()) for c in cols_out]
    )

    def apply(batches):
        for pdf in batches:
            out = pdf[cols_in].to_numpy() @ small
            yield pd.concat([pdf[["id"]].reset_index(drop=True), pd.DataFrame(out, columns=cols_out)], axis=1)

    return block.mapInPandas(apply, schema)


def top_eigen_embedding(
    edges: DataFrame,
    nodes: DataFrame,
    dim: int,
    oversample: int,
    power_iters: int,
    seed: int,
    log: Callable[[str], None] = lambda _: None,
) -> DataFrame:
    """(id, emb: array<float>) with emb = U_top |lam_top|^(1/2), L2-normalised (null if zero).

    ``edges`` (src, dst, w) must describe a symmetric matrix M; ``nodes`` (id) lists its rows.
    Spark passes: Y = M Omega; per power iteration one Gram pass and one product whose
    orthonormalisation Q = Y R^-1 is applied row-locally on the fly; a last pass computes
    Y^T Y and Y^T M Y together, and the Rayleigh-Ritz step solves the k x k generalised
    eigenproblem on the driver (no separate Q is ever materialised).
    """
    n_nodes = nodes.count()
    k = max(1, min(dim + oversample, n_nodes))
    edges = _materialize(edges.select("src", "dst", F.col("w").cast("double").alias("w")))
    log(f"eigen: {n_nodes:,} nodes, {edges.count():,} entries, k={k}, power_iters={power_iters}")
    y = _materialize(multiply(edges, random_block(nodes, k, seed), k))
    for i in range(power_iters):
        q = times_small(y, k, orthonormalizer(block_gram(y, k)))
        y = _materialize(multiply(edges, q, k))
        log(f"eigen: power iteration {i + 1}/{power_iters} done")
    z = multiply(edges, y, k).select("id", *[F.col(c).alias(z) for c, z in zip(_cols(k), _cols(k, "z"))])
    both = _sum_matrices(
        y.join(z, on="id"),
        k,
        2 * k,
        lambda pdf: cross_gram(pdf[_cols(k)].to_numpy(), pdf[_cols(k) + _cols(k, "z")].to_numpy()),
    )
    g, t = both[:, :k], both[:, k:]
    # Rayleigh-Ritz on span(Y): with Q = Y R^-1 orthonormal, T_q = R^-T (Y^T M Y) R^-1.
    r_inv = orthonormalizer(g)
    mapping, lam = ritz_projection(r_inv.T @ t @ r_inv, min(dim, k))
    log(f"eigen: top eigenvalues {np.round(lam[:5], 4).tolist()}")
    return _embedding_rows(y, k, r_inv @ mapping, dim)
def _embedding_rows(q: DataFrame, k: int, mapping: np.ndarray, dim: int) -> DataFrame:
    cols = _cols(k)
    schema = T.StructType(
        [T.StructField("id", T.StringType()), T.StructField("emb", T.ArrayType(T.FloatType()))]
    )

    def apply(batches):
        for pdf in batches:
            x = pdf[cols].to_numpy() @ mapping
            if x.shape[1] < dim:  # tiny graphs: pad so every row has the configured width
                x = np.pad(x, ((0, 0), (0, dim - x.shape[1])))
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            ok = norms[:, 0] > 1e-12
            x = (x / np.where(ok[:, None], norms, 1.0)).astype(np.float32)
            yield pd.DataFrame({"id": pdf["id"].to_numpy(), "emb": [row if good else None for row, good in zip(x, ok)]})

    return q.mapInPandas(apply, schema)
