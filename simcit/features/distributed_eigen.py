"""Spark execution of :mod:`geo.randomized_eigen`: top eigenvectors of a graph given as edges.

A sparse matrix on int64 node ids is built once as CSR row blocks (:class:`BlockMatrix`): the
entries are range-partitioned by row id (contiguous id ranges, balanced by entry count) and a
Python worker turns each partition into one cached row holding its CSR matrix (rows = the
block's nodes, columns = the ids its entries reach, plus its own rows), reducing duplicate
entries with numpy. Entry-wise rewrites that need per-node statistics (the lazy random-walk
normalisation of the geo view, PPMI of the cf view) run on the blocks too: row sums are
complete inside a block and are gathered for the columns like any other vector.

Dense n x k blocks live as DataFrames ``(id, c0 .. c{k-1})``. A product M @ X is one join of
X with the cached (block, id) "need" list and one cogroup of those rows with the matrix blocks:
the worker gathers the rows of X its block reads and runs one scipy sparse x dense product,
emitting the block's rows of M @ X (no per-entry join, sort or aggregation in Spark). The
random test block Omega is a hash of (id, column), made inside the workers. Gram matrices are
summed per block and only k x k matrices reach the driver: nothing of size n is ever collected,
so the driver's memory does not grow with the graph. Shuffle volume per product is the sum over
blocks of the rows each reads: about n rows when neighbours have nearby ids (the pipeline
numbers POIs in H3 order), up to blocks x n otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from geo.randomized_eigen import gram, orthonormalizer, ritz_projection

BLOCK_ENTRIES = 2_000_000  # matrix entries per row block at most (bounds a worker's CSR and gathered X)
MIN_BLOCK_ENTRIES = 250_000  # below this, more blocks cost more in overhead than they gain

_BLOCK_SCHEMA = T.StructType(
    [
        T.StructField("b", T.IntegerType()),
        T.StructField("rows", T.BinaryType()),
        T.StructField("cols", T.BinaryType()),
        T.StructField("indptr", T.BinaryType()),
        T.StructField("indices", T.BinaryType()),
        T.StructField("data", T.BinaryType()),
    ]
)
_MATRIX_SCHEMA = T.StructType([T.StructField("m", T.ArrayType(T.DoubleType()))])
EDGE_SCHEMA = T.StructType(
    [T.StructField("src", T.LongType()), T.StructField("dst", T.LongType()), T.StructField("w", T.DoubleType())]
)


def spark_int_hash(value: int, seed: int = 42) -> int:
    """Spark's ``hash()`` of an int column (Murmur3 x86_32 hashInt), as HashPartitioning uses it."""
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    k1 = (value & mask) * 0xCC9E2D51 & mask
    k1 = rotl(k1, 15) * 0x1B873593 & mask
    h1 = rotl(seed ^ k1, 13)
    h1 = (h1 * 5 + 0xE6546B64) & mask
    h1 ^= 4
    h1 ^= h1 >> 16
    h1 = h1 * 0x85EBCA6B & mask
    h1 ^= h1 >> 13
    h1 = h1 * 0xC2B2AE35 & mask
    h1 ^= h1 >> 16
    return h1 - (1 << 32) if h1 >= 1 << 31 else h1


def spread_keys(n: int, partitions: int) -> list[int]:
    """n int keys that Spark's hash partitioning into ``partitions`` puts on distinct partitions
    (round robin): a few blocks must not end up in one task while other cores idle."""
    keys, key = [], 0
    while len(keys) < n:
        if spark_int_hash(key) % partitions == len(keys) % partitions:  # Python % is pmod
            keys.append(key)
        key += 1
    return keys


def _cols(k: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{j}" for j in range(k)]


def _block_schema(k: int) -> T.StructType:
    return T.StructType([T.StructField("id", T.LongType())] + [T.StructField(c, T.DoubleType()) for c in _cols(k)])


def _materialize(df: DataFrame) -> DataFrame:
    # Cuts the lineage of the iteration (each step would otherwise replay all previous ones).
    return df.localCheckpoint(eager=True)


def hash_uniform(ids: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Omega rows: uniform(-1, 1) entries from a splitmix64 hash of (id, column, seed).

    A pure function of the node id: identical on every run and on every partitioning."""
    ids = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    col = np.arange(k, dtype=np.uint64) + np.uint64(seed % (1 << 31)) * np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        x = ids[:, None] * np.uint64(0x9E3779B97F4A7C15) + col[None, :] * np.uint64(0xD1B54A32D192ED03)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * (2.0 / float(1 << 53)) - 1.0


def _unpack(block: pa.Table) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    def get(c: str) -> bytes:
        return block.column(c)[0].as_py()

    rows = np.frombuffer(get("rows"), dtype=np.int64)
    cols = np.frombuffer(get("cols"), dtype=np.int64)
    indptr = np.frombuffer(get("indptr"), dtype=np.int64)
    indices = np.frombuffer(get("indices"), dtype=np.int32)
    data = np.frombuffer(get("data"), dtype=np.float64)
    return rows, cols, sp.csr_matrix((data, indices, indptr), shape=(len(rows), len(cols)))


_ARROW_BLOCK = pa.schema([(f.name, pa.int32() if f.name == "b" else pa.binary()) for f in _BLOCK_SCHEMA.fields])


def _pack(b: int, rows: np.ndarray, cols: np.ndarray, m: sp.csr_matrix) -> pa.RecordBatch:
    m = sp.csr_matrix(m)
    values = [
        np.asarray(rows, np.int64), np.asarray(cols, np.int64), m.indptr.astype(np.int64),
        m.indices.astype(np.int32), m.data.astype(np.float64),
    ]
    arrays = [pa.array([b], pa.int32())] + [pa.array([v.tobytes()], pa.binary()) for v in values]
    return pa.RecordBatch.from_arrays(arrays, schema=_ARROW_BLOCK)


def _compact(rows: np.ndarray, cols: np.ndarray, m: sp.csr_matrix):
    """Drop rows without entries and columns nothing reads (a block's own rows stay columns)."""
    m = sp.csr_matrix(m)
    m.eliminate_zeros()
    keep_rows = np.diff(m.indptr) > 0
    used = np.zeros(len(cols), dtype=bool)
    used[m.indices] = True
    used[np.searchsorted(cols, rows[keep_rows])] = True
    m = m[keep_rows][:, used]
    return rows[keep_rows], cols[used], sp.csr_matrix(m)


def combine_entries(
    src: np.ndarray, dst: np.ndarray, weights: dict[str, np.ndarray], how: dict[str, str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One entry per (src, dst): each weight column reduced by its rule ("max" or "sum", nulls
    as NaN are skipped), the reduced columns summed."""
    order = np.lexsort((dst, src))
    src, dst = src[order], dst[order]
    first = np.ones(len(src), dtype=bool)
    first[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    starts = np.flatnonzero(first)
    total = np.zeros(len(starts))
    for name, rule in how.items():
        v = np.asarray(weights[name], dtype=np.float64)[order]
        if rule == "max":
            r = np.fmax.reduceat(np.where(np.isnan(v), -np.inf, v), starts) if len(v) else np.zeros(0)
            total += np.where(np.isfinite(r), r, 0.0)
        elif rule == "sum":
            total += np.add.reduceat(np.nan_to_num(v), starts) if len(v) else 0.0
        else:
            raise ValueError(f"unknown combine rule {rule!r}")
    return src[starts], dst[starts], total


def _table(ids: np.ndarray, x: np.ndarray) -> pa.Table:
    arrays = [pa.array(np.asarray(ids, dtype=np.int64))] + [pa.array(np.ascontiguousarray(x[:, j])) for j in range(x.shape[1])]
    return pa.Table.from_arrays(arrays, names=["id", *_cols(x.shape[1])])


def _gathered(cols: np.ndarray, x: pa.Table, names: list[str]) -> np.ndarray:
    """Rows of X (columns ``names``) for the block's columns, in column order (zeros for an id
    X does not hold)."""
    out = np.zeros((len(cols), len(names)))
    ids = x.column("id").to_numpy()
    if len(ids) == 0:
        return out
    mat = np.column_stack([x.column(c).to_numpy(zero_copy_only=False) for c in names])
    order = np.argsort(ids, kind="stable")
    ids, mat = ids[order], mat[order]
    pos = np.minimum(np.searchsorted(ids, cols), len(ids) - 1)
    hit = ids[pos] == cols
    out[hit] = mat[pos[hit]]
    return out


BlockFn = Callable[[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray, np.ndarray], sp.csr_matrix]


class BlockMatrix:
    """A sparse matrix on int64 node ids, cut into cached CSR row blocks (see the module
    docstring). Rows are the nodes; every block also lists, as columns, the ids it reads."""

    def __init__(
        self,
        edges: DataFrame,
        block_entries: int = BLOCK_ENTRIES,
        combine: dict[str, str] | None = None,
    ):
        """``edges`` (src, dst, w), or (src, dst, <weight columns>) with ``combine`` naming the
        rule ("max"/"sum") that reduces each column over duplicate (src, dst) rows; the reduced
        columns are summed (without ``combine``, duplicate rows are summed)."""
        spark = edges.sparkSession
        how = combine or {"w": "sum"}
        cached = edges.select(
            F.col("src").cast("long").alias("src"),
            F.col("dst").cast("long").alias("dst"),
            *[F.col(c).cast("double").alias(c) for c in how],
        ).persist(StorageLevel.MEMORY_AND_DISK)
        rows_in = cached.count()
        parallelism = spark.sparkContext.defaultParallelism
        n_blocks = max(1, math.ceil(rows_in / block_entries), min(parallelism, math.ceil(rows_in / MIN_BLOCK_ENTRIES)))
        # Contiguous src ranges, one per partition (range partitioning samples a few ids only).
        ranged = cached.repartitionByRange(n_blocks, "src") if n_blocks > 1 else cached.coalesce(1)
        # Block keys that the cogroups' hash partitioning spreads over distinct tasks.
        self._partitions = int(spark.conf.get("spark.sql.shuffle.partitions"))
        keys = F.array(*[F.lit(k) for k in spread_keys(n_blocks, self._partitions)])
        keyed = ranged.select("src", "dst", *how, F.element_at(keys, F.spark_partition_id() + 1).alias("b"))

        def build(batches):  # the whole partition is one block
            parts = [b for b in batches if b.num_rows]
            if not parts:
                return
            table = pa.Table.from_batches(parts)
            b = table.column("b")[0].as_py()
            src, dst, w = combine_entries(
                table.column("src").to_numpy(),
                table.column("dst").to_numpy(),
                {c: table.column(c).to_numpy(zero_copy_only=False) for c in how},
                how,
            )
            rows = np.unique(src)
            cols = np.unique(np.concatenate([dst, rows]))  # own rows too: the final pass reads them
            m = sp.csr_matrix((w, (np.searchsorted(rows, src), np.searchsorted(cols, dst))), shape=(len(rows), len(cols)))
            yield _pack(b, rows, cols, m)

        self.blocks = self.need = None
        self._set_blocks(keyed.mapInArrow(build, _BLOCK_SCHEMA))
        cached.unpersist()

    def _set_blocks(self, blocks: DataFrame) -> None:
        old = (self.blocks, self.need)
        self.blocks = blocks.repartition(self._partitions, "b").persist(StorageLevel.MEMORY_AND_DISK)
        sizes = self.blocks.select(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.length("rows") / 8).alias("rows"),
            F.sum(F.length("cols") / 8).alias("cols"),
            F.sum(F.length("data") / 8).alias("entries"),
        ).first()
        self.n_blocks, self.nodes = sizes["n"], int(sizes["rows"] or 0)
        self.needed_rows, self.entries = int(sizes["cols"] or 0), int(sizes["entries"] or 0)

        def need(batches):  # (b, id) for every id a block reads, straight from its column list
            for batch in batches:
                for i in range(batch.num_rows):
                    cols = np.frombuffer(batch.column(1)[i].as_py(), dtype=np.int64)
                    b = batch.column(0)[i].as_py()
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(np.full(len(cols), b, np.int32)), pa.array(cols)], names=["b", "id"]
                    )

        need_schema = T.StructType([T.StructField("b", T.IntegerType()), T.StructField("id", T.LongType())])
        self.need = self.blocks.select("b", "cols").mapInArrow(need, need_schema).persist(StorageLevel.MEMORY_AND_DISK)
        self.need.count()
        for df in old:
            if df is not None:
                df.unpersist()

    def release(self) -> None:
        self.blocks.unpersist()
        self.need.unpersist()

    def row_sums(self) -> DataFrame:
        """(id, s): the sum of every row (a row is complete inside its block)."""

        def apply(batches):
            for batch in batches:
                for i in range(batch.num_rows):
                    rows, _, m = _unpack(pa.Table.from_batches([batch.slice(i, 1)]))
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(rows), pa.array(np.asarray(m.sum(axis=1)).ravel())], names=["id", "s"]
                    )

        schema = T.StructType([T.StructField("id", T.LongType()), T.StructField("s", T.DoubleType())])
        return self.blocks.mapInArrow(apply, schema)

    def transform(self, fn: BlockFn) -> None:
        """Replace every block by ``fn(rows, cols, m, s_rows, s_cols)`` (a matrix of the same
        shape; s = the row sums of the current matrix, for the block's rows and columns). Rows
        left without entries stop being nodes."""
        gathered = self.need.join(self.row_sums(), "id")

        def apply(block: pa.Table, stats: pa.Table) -> pa.Table:
            if block.num_rows == 0:
                return pa.Table.from_batches([], schema=_ARROW_BLOCK)
            rows, cols, m = _unpack(block)
            s_cols = _gathered(cols, stats, ["s"])[:, 0]
            out = fn(rows, cols, m, s_cols[np.searchsorted(cols, rows)], s_cols)
            rows, cols, out = _compact(rows, cols, out)
            return pa.Table.from_batches([_pack(block.column("b")[0].as_py(), rows, cols, out)])

        self._set_blocks(self.blocks.groupBy("b").cogroup(gathered.groupBy("b")).applyInArrow(apply, _BLOCK_SCHEMA))

    def entries_frame(self) -> DataFrame:
        """(src, dst, w) of every stored entry (for tests and inspection)."""

        def apply(batches):
            for batch in batches:
                for i in range(batch.num_rows):
                    rows, cols, m = _unpack(pa.Table.from_batches([batch.slice(i, 1)]))
                    coo = m.tocoo()
                    yield pa.RecordBatch.from_arrays(
                        [pa.array(rows[coo.row]), pa.array(cols[coo.col]), pa.array(coo.data)], names=["src", "dst", "w"]
                    )

        return self.blocks.mapInArrow(apply, EDGE_SCHEMA)

    def random_product(self, k: int, seed: int) -> DataFrame:
        """M @ Omega."""

        def apply(batches):
            for batch in batches:
                for i in range(batch.num_rows):
                    rows, cols, m = _unpack(pa.Table.from_batches([batch.slice(i, 1)]))
                    yield from _table(rows, m @ hash_uniform(cols, k, seed)).to_batches()

        return self.blocks.mapInArrow(apply, _block_schema(k))

    def _cogroup(self, x: DataFrame, fn, schema: T.StructType) -> DataFrame:
        gathered = self.need.join(x, "id")
        return self.blocks.groupBy("b").cogroup(gathered.groupBy("b")).applyInArrow(fn, schema)

    def product(self, x: DataFrame, k: int, small: np.ndarray | None = None) -> DataFrame:
        """M @ (X @ small) (small: an optional k x k' matrix applied row-locally)."""
        k_out = k if small is None else small.shape[1]

        def fn(block: pa.Table, xs: pa.Table) -> pa.Table:
            if block.num_rows == 0:
                return _table(np.zeros(0, np.int64), np.zeros((0, k_out)))
            rows, cols, m = _unpack(block)
            xm = _gathered(cols, xs, _cols(k))
            if small is not None:
                xm = xm @ small
            return _table(rows, m @ xm)

        return self._cogroup(x, fn, _block_schema(k_out))

    def rayleigh_grams(self, y: DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Y^T Y, Y^T M Y), summed over blocks (one k x 2k matrix per block reaches the driver)."""

        def fn(block: pa.Table, xs: pa.Table) -> pa.Table:
            acc = np.zeros((k, 2 * k))
            if block.num_rows:
                rows, cols, m = _unpack(block)
                ym = _gathered(cols, xs, _cols(k))
                own = ym[np.searchsorted(cols, rows)]
                acc = own.T @ np.hstack([own, m @ ym])
            return pa.table({"m": [acc.ravel().tolist()]})

        total = np.zeros((k, 2 * k))
        for row in self._cogroup(y, fn, _MATRIX_SCHEMA).collect():
            total += np.asarray(row["m"]).reshape(k, 2 * k)
        return total[:, :k], total[:, k:]


def _sum_matrices(df: DataFrame, k_rows: int, k_cols: int, fn: Callable[[pd.DataFrame], np.ndarray]) -> np.ndarray:
    def partial(batches):
        acc = np.zeros((k_rows, k_cols))
        for pdf in batches:
            if len(pdf):
                acc += fn(pdf)
        yield pd.DataFrame({"m": [acc.ravel()]})

    total = np.zeros((k_rows, k_cols))
    for row in df.mapInPandas(partial, _MATRIX_SCHEMA).collect():  # one k x k matrix per partition
        total += np.asarray(row["m"]).reshape(k_rows, k_cols)
    return total


def block_gram(block: DataFrame, k: int) -> np.ndarray:
    cols = _cols(k)
    return _sum_matrices(block, k, k, lambda pdf: gram(pdf[cols].to_numpy()))


def top_eigen_embedding(
    matrix: BlockMatrix,
    dim: int,
    oversample: int,
    power_iters: int,
    seed: int,
    log: Callable[[str], None] = lambda _: None,
) -> DataFrame:
    """(id, emb: array<float>) with emb = U_top |lam_top|^(1/2), L2-normalised (null if zero).

    ``matrix`` must be symmetric; its rows are the nodes. It is released at the end. Passes:
    Y = M Omega; per power iteration one Gram pass and one product with the orthonormalisation
    Q = Y R^-1 applied inside it; a last pass computes Y^T Y and Y^T M Y together, and the
    Rayleigh-Ritz step solves the k x k generalised eigenproblem on the driver (no separate Q
    is ever materialised).
    """
    k = max(1, min(dim + oversample, matrix.nodes))
    log(
        f"eigen: {matrix.nodes:,} nodes, {matrix.entries:,} entries in {matrix.n_blocks} blocks "
        f"({matrix.needed_rows:,} gathered rows per product), k={k}, power_iters={power_iters}"
    )
    y = _materialize(matrix.random_product(k, seed))
    for i in range(power_iters):
        y = _materialize(matrix.product(y, k, orthonormalizer(block_gram(y, k))))
        log(f"eigen: power iteration {i + 1}/{power_iters} done")
    g, t = matrix.rayleigh_grams(y, k)
    # Rayleigh-Ritz on span(Y): with Q = Y R^-1 orthonormal, T_q = R^-T (Y^T M Y) R^-1.
    r_inv = orthonormalizer(g)
    mapping, lam = ritz_projection(r_inv.T @ t @ r_inv, min(dim, k))
    log(f"eigen: top eigenvalues {np.round(lam[:5], 4).tolist()}")
    out = _embedding_rows(y, k, r_inv @ mapping, dim).localCheckpoint(eager=True)
    matrix.release()
    return out


def _embedding_rows(q: DataFrame, k: int, mapping: np.ndarray, dim: int) -> DataFrame:
    cols = _cols(k)
    schema = T.StructType(
        [T.StructField("id", q.schema["id"].dataType), T.StructField("emb", T.ArrayType(T.FloatType()))]
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
