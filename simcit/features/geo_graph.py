"""geo view: the POI graph (spatial rings + mobility + H3 hierarchy) and its spectral embedding.

Nodes are POIs with coordinates, as dense int64 item ids (:mod:`simcit.features.node_index`),
plus coarse H3 cells, as their 64-bit H3 index (always >= 2^59, so never an item id). Edges:
  * spatial: POI -> the ``max_neighbors`` nearest POIs (ties by item id) whose cell lies in its
    k-ring at ``ring_resolution``, taking at most ``max_cell_candidates`` POIs from one ring cell
    (the first by xxhash64 of the item id, then id), weight 1 / (1 + d / edge_length):
    dense downtown cells cannot blow the work up. Computed per H3 region at
    ``region_resolution`` in a Python worker (:func:`ring_knn`, vectorised numpy): a region
    receives its own POIs plus every POI of a cell that one of its POIs' rings reaches (the
    halo, whole cells, so the per-cell cap is the same as on the whole catalogue). The result
    is exactly the former candidate-pair join's, without shuffling the candidate pairs;
  * mobility: consecutive check-ins of a user within ``mobility_max_gap_hours``, from the
    **training part only** (:mod:`simcit.features.interaction_pairs`), weight log(1 + count);
  * hierarchy: POI <-> its cells at ``cell_resolutions`` (e.g. res 6/7 districts), so isolated
    POIs are still placed by region.
Every type is symmetric (spatial by max, mobility by summed counts) and the types are summed:
the typed rows go straight into the CSR row blocks of the eigensolver, which reduce them per
entry; degrees and the normalisation are computed on the blocks too (no per-entry Spark joins).
The embedding is the top eigenspace of the lazy random-walk matrix (I + D^-1/2 A D^-1/2) / 2.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from geo.distance import EARTH_RADIUS_M, haversine_m as np_haversine_m
from geo.h3_cells import edge_length_m
from simcit.config import GeoViewConfig
from simcit.features.distributed_eigen import BlockMatrix, top_eigen_embedding
from simcit.features.interaction_pairs import symmetric_rows

EDGE_SCHEMA = T.StructType(
    [T.StructField("src", T.LongType()), T.StructField("dst", T.LongType()), T.StructField("w", T.DoubleType())]
)
_CHUNK_PAIRS = 1 << 20  # candidate pairs evaluated at once inside one region task


def haversine_m(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    """Native Spark haversine (same formula as :func:`geo.distance.haversine_m`)."""
    p1, p2 = F.radians(lat1), F.radians(lat2)
    a = F.pow(F.sin((p2 - p1) / 2), 2) + F.cos(p1) * F.cos(p2) * F.pow(F.sin(F.radians(lon2 - lon1) / 2), 2)
    return 2 * EARTH_RADIUS_M * F.asin(F.sqrt(F.least(F.lit(1.0), a)))


def _h3_long(cell: Column) -> Column:
    return F.conv(cell, 16, 10).cast("long")


def located_points(cells: DataFrame, index: DataFrame) -> DataFrame:
    """(nid, item_id, latitude, longitude, cell, ring, region, hkey, coarse) with int64 cells.

    ``cells`` from :func:`simcit.features.h3_view.poi_cells`; ``hkey`` is the xxhash64 of the
    item id that picks a cell's first ``max_cell_candidates``.
    """
    return cells.join(index, "item_id").select(
        "nid",
        "item_id",
        "latitude",
        "longitude",
        _h3_long(F.col("cell")).alias("cell"),
        F.transform("ring", _h3_long).alias("ring"),
        _h3_long(F.col("region")).alias("region"),
        F.xxhash64("item_id").alias("hkey"),
        "coarse",
    )


def ring_knn(
    tie: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    cell: np.ndarray,
    hkey: np.ndarray,
    sources: np.ndarray,
    ring_lengths: np.ndarray,
    ring_cells: np.ndarray,
    max_neighbors: int,
    max_cell_candidates: int,
    chunk_pairs: int = _CHUNK_PAIRS,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed kNN edges (src row, dst row, distance m) among the rows of one region.

    ``sources`` are the rows to find neighbours for; their k-rings are ``ring_cells``
    (concatenated, ``ring_lengths`` each). Candidates of a source: rows other than itself whose
    ``cell`` is in its ring, at most ``max_cell_candidates`` per cell (the first by (hkey, tie));
    kept: the ``max_neighbors`` nearest by (haversine distance, tie). ``tie`` orders rows like
    their item ids. Every cell a ring names must be present with all its rows. Work per chunk
    is bounded by ``chunk_pairs`` pairs.
    """
    n = len(tie)
    order = np.lexsort((tie, hkey, cell))
    c_sorted = cell[order]
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = c_sorted[1:] != c_sorted[:-1]
    slot = np.arange(n) - np.maximum.accumulate(np.where(new_run, np.arange(n), 0))
    cand = order[slot < max_cell_candidates]  # still grouped by cell, in ascending cell order
    cand_cell = cell[cand]
    lo = np.searchsorted(cand_cell, ring_cells, "left")
    cnt = np.searchsorted(cand_cell, ring_cells, "right") - lo
    ring_lengths = np.asarray(ring_lengths, dtype=np.int64)
    q_start = np.concatenate([[0], np.cumsum(ring_lengths)])
    pairs_of = np.bincount(np.repeat(np.arange(len(sources)), ring_lengths), weights=cnt, minlength=len(sources))
    pairs_of = pairs_of.astype(np.int64)
    cum = np.concatenate([[0], np.cumsum(pairs_of)])
    out_s, out_d, out_dist = [], [], []
    a = 0
    while a < len(sources):
        # Largest run of sources whose candidate pairs fit in a chunk (at least one source).
        b = max(a + 1, int(np.searchsorted(cum, cum[a] + chunk_pairs, "right")) - 1)
        qa, qb = q_start[a], q_start[b]
        c = cnt[qa:qb]
        total = int(c.sum())
        if total:
            rep = np.repeat(np.arange(qa, qb), c)
            within = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
            dst = cand[lo[rep] + within]
            src = np.repeat(sources[a:b], pairs_of[a:b])
            keep = dst != src
            src, dst = src[keep], dst[keep]
            d = np_haversine_m(lat[src], lon[src], lat[dst], lon[dst])
            o = np.lexsort((tie[dst], d, src))
            src, dst, d = src[o], dst[o], d[o]
            first = np.ones(len(src), dtype=bool)
            first[1:] = src[1:] != src[:-1]
            rank = np.arange(len(src)) - np.maximum.accumulate(np.where(first, np.arange(len(src)), 0))
            top = rank < max_neighbors
            out_s.append(src[top]), out_d.append(dst[top]), out_dist.append(d[top])
        a = b
    if not out_s:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(out_s), np.concatenate(out_d), np.concatenate(out_dist)


def directed_spatial_edges(points: DataFrame, cfg: GeoViewConfig) -> DataFrame:
    """(src, dst, w) of every kNN choice, emitted in both directions (not yet deduplicated)."""
    scale = edge_length_m(cfg.ring_resolution)
    weight, k, cap = cfg.spatial_weight, cfg.max_neighbors, cfg.max_cell_candidates
    # Region -> the cells its POIs' rings reach; each such cell's POIs join the region's task.
    need = points.select(F.col("region").alias("grp"), F.explode("ring").alias("cell")).distinct()
    members = points.join(need, "cell").select(
        "grp",
        "nid",
        "item_id",
        "latitude",
        "longitude",
        "cell",
        "hkey",
        F.when(F.col("grp") == F.col("region"), F.col("ring")).alias("ring"),  # own POIs only
    )

    def per_region(pdf: pd.DataFrame) -> pd.DataFrame:
        owned = pdf["ring"].notna().to_numpy()
        sources = np.flatnonzero(owned)
        rings = pdf["ring"].to_numpy()[sources]
        lengths = np.array([len(r) for r in rings], dtype=np.int64)
        ring_cells = np.concatenate([np.asarray(r, dtype=np.int64) for r in rings]) if len(rings) else np.zeros(0, np.int64)
        nid = pdf["nid"].to_numpy(np.int64)
        tie = np.empty(len(pdf), dtype=np.int64)
        tie[np.argsort(pdf["item_id"].to_numpy(object), kind="stable")] = np.arange(len(pdf))
        s, d, dist = ring_knn(
            tie,
            pdf["latitude"].to_numpy(np.float64),
            pdf["longitude"].to_numpy(np.float64),
            pdf["cell"].to_numpy(np.int64),
            pdf["hkey"].to_numpy(np.int64),
            sources,
            lengths,
            ring_cells,
            k,
            cap,
        )
        w = weight / (1.0 + dist / scale)
        return pd.DataFrame(
            {"src": np.concatenate([nid[s], nid[d]]), "dst": np.concatenate([nid[d], nid[s]]), "w": np.concatenate([w, w])}
        )

    return members.groupBy("grp").applyInPandas(per_region, EDGE_SCHEMA)


def spatial_edges(points: DataFrame, cfg: GeoViewConfig) -> DataFrame:
    """Symmetric spatial edges (src, dst, w): the kNN choices of both ends, by max."""
    return directed_spatial_edges(points, cfg).groupBy("src", "dst").agg(F.max("w").alias("w"))


GEO_COMBINE = {"ws": "max", "wm": "sum", "wc": "max"}  # spatial by max, mobility summed, cells by max


def geo_adjacency_rows(points: DataFrame, pairs: DataFrame | None, cfg: GeoViewConfig) -> DataFrame:
    """Typed adjacency rows (src, dst, ws, wm, wc) over POI and cell node ids, both directions.

    Reduced per (src, dst) by :data:`GEO_COMBINE` and summed (inside the matrix blocks, see
    :class:`simcit.features.distributed_eigen.BlockMatrix`), they give the symmetric adjacency.
    ``points`` from :func:`located_points`; a cell node's id is its H3 index. ``pairs``
    (training-part pair counts) gives the mobility edges, restricted to located POIs.
    """
    zero = F.lit(None).cast("double")
    spatial = directed_spatial_edges(points, cfg).select("src", "dst", F.col("w").alias("ws"), zero.alias("wm"), zero.alias("wc"))
    links = points.select("nid", F.explode(F.transform("coarse", _h3_long)).alias("cnid"))
    cw = F.lit(float(cfg.cell_weight))
    hierarchy = links.select(F.col("nid").alias("src"), F.col("cnid").alias("dst"), zero.alias("ws"), zero.alias("wm"), cw.alias("wc"))
    hierarchy = hierarchy.unionByName(
        links.select(F.col("cnid").alias("src"), F.col("nid").alias("dst"), zero.alias("ws"), zero.alias("wm"), cw.alias("wc"))
    )
    parts = spatial.unionByName(hierarchy)
    if cfg.mobility_weight > 0 and pairs is not None:
        located = points.select("nid")
        moves = (
            pairs.where(F.col("mob_c") > 0)
            .join(located.withColumnRenamed("nid", "src"), "src", "left_semi")
            .join(located.withColumnRenamed("nid", "dst"), "dst", "left_semi")
        )
        mob = symmetric_rows(moves, "mob_c", "c")
        parts = parts.unionByName(
            mob.select("src", "dst", zero.alias("ws"), (cfg.mobility_weight * F.log1p(F.col("c"))).alias("wm"), zero.alias("wc"))
        )
    return parts


def lazy_walk(rows: np.ndarray, cols: np.ndarray, a: sp.csr_matrix, d_rows: np.ndarray, d_cols: np.ndarray) -> sp.csr_matrix:
    """A block of M = (I + D^-1/2 A D^-1/2) / 2 from the block of A and the degrees (row sums)."""
    inv = [np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0) for d in (d_rows, d_cols)]
    scaled = sp.diags(inv[0]) @ a @ sp.diags(inv[1])
    eye = sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), np.searchsorted(cols, rows))), shape=a.shape)
    return sp.csr_matrix(0.5 * scaled + 0.5 * eye)


def geo_matrix(points: DataFrame, pairs: DataFrame | None, cfg: GeoViewConfig) -> BlockMatrix:
    """The lazy random-walk matrix of the POI graph, as cached row blocks."""
    matrix = BlockMatrix(geo_adjacency_rows(points, pairs, cfg), combine=GEO_COMBINE)
    matrix.transform(lazy_walk)
    return matrix


def geo_embeddings(
    cells: DataFrame,
    index: DataFrame,
    pairs: DataFrame | None,
    cfg: GeoViewConfig,
    log: Callable[[str], None],
) -> DataFrame:
    """(item_id, geo_emb) for every POI with coordinates.

    ``index`` (item_id, nid) numbers the items; ``pairs`` are the training-part pair counts of
    :func:`simcit.features.interaction_pairs.interaction_pair_counts` (or None).
    """
    t = time.time()
    points = located_points(cells, index)
    matrix = geo_matrix(points, pairs, cfg)
    log(f"geo graph: lazy-walk matrix built in {time.time() - t:.1f}s")
    emb = top_eigen_embedding(matrix, cfg.dim, cfg.oversample, cfg.power_iters, cfg.seed, log)
    # Cell nodes drop out of the join with the POIs.
    return emb.join(points.select(F.col("nid").alias("id"), "item_id"), "id").select(
        "item_id", F.col("emb").alias("geo_emb")
    )
