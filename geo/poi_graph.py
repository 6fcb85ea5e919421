"""In-memory POI graph and geo embedding: the reference for the Spark job, and the path for
small catalogues (tests, notebooks). Same edges, weights and factorisation as
``simcit.features.geo_graph``; candidates come from H3 cell buckets, never an all-pairs loop.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from geo import h3_cells
from geo.distance import haversine_m
from geo.graph_weights import mobility_weight, spatial_weight
from geo.randomized_eigen import embed_sparse, lazy_walk_matrix, normalize_rows


@dataclass(frozen=True)
class GraphParams:
    ring_resolution: int = 9
    ring_k: int = 1
    max_neighbors: int = 16
    cell_resolutions: tuple[int, ...] = (6, 7)
    spatial_weight: float = 1.0
    mobility_weight: float = 1.0
    cell_weight: float = 0.5


def spatial_edges(
    lat: np.ndarray, lon: np.ndarray, p: GraphParams, ids: np.ndarray | None = None
) -> dict[tuple[int, int], float]:
    """Directed k-nearest edges among POIs in neighbouring cells, then symmetrised by max.

    Equal distances (POIs sharing coordinates) are broken by ``ids`` (default: row index), as
    the Spark job breaks them by item id. (The Spark job also caps the candidates one cell may
    contribute at ``max_cell_candidates``; both agree whenever no cell holds more POIs.)
    """
    tie = np.arange(len(lat)) if ids is None else np.asarray(ids)
    cells = h3_cells.cells(lat, lon, p.ring_resolution)
    bucket: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cells):
        bucket[c].append(i)
    scale = h3_cells.edge_length_m(p.ring_resolution)
    edges: dict[tuple[int, int], float] = {}
    for i, c in enumerate(cells):
        cand = np.array([j for cell in h3_cells.disk(c, p.ring_k) for j in bucket.get(cell, ()) if j != i], dtype=int)
        if cand.size == 0:
            continue
        d = haversine_m(lat[i], lon[i], lat[cand], lon[cand])
        order = np.lexsort((tie[cand], d))[: p.max_neighbors]  # by distance, then id
        for j, dist in zip(cand[order], d[order]):
            w = p.spatial_weight * float(spatial_weight(dist, scale))
            for key in ((i, int(j)), (int(j), i)):
                edges[key] = max(edges.get(key, 0.0), w)
    return edges


def adjacency(
    lat: np.ndarray,
    lon: np.ndarray,
    transitions: tuple[np.ndarray, np.ndarray] | None,
    p: GraphParams,
) -> sp.csr_matrix:
    """Adjacency over POIs (first n rows) and their coarse cells (after), summed edge types."""
    n = len(lat)
    rows, cols, vals = [], [], []
    for (i, j), w in spatial_edges(lat, lon, p).items():
        rows.append(i), cols.append(j), vals.append(w)
    if transitions is not None and len(transitions[0]) and p.mobility_weight > 0:
        src, dst = transitions
        pairs = defaultdict(float)
        for a, b in zip(src, dst):
            pairs[(int(a), int(b))] += 1.0
            pairs[(int(b), int(a))] += 1.0
        for (a, b), c in pairs.items():
            rows.append(a), cols.append(b), vals.append(p.mobility_weight * float(mobility_weight(c)))
    cell_index: dict[str, int] = {}
    for r in p.cell_resolutions:
        for i, c in enumerate(h3_cells.cells(lat, lon, r)):
            node = cell_index.setdefault(c, n + len(cell_index))
            rows += [i, node]
            cols += [node, i]
            vals += [p.cell_weight, p.cell_weight]
    size = n + len(cell_index)
    return sp.csr_matrix((vals, (rows, cols)), shape=(size, size))


def geo_embedding(
    lat: np.ndarray,
    lon: np.ndarray,
    transitions: tuple[np.ndarray, np.ndarray] | None = None,
    params: GraphParams = GraphParams(),
    dim: int = 64,
    oversample: int = 8,
    power_iters: int = 1,
    seed: int = 0,
) -> np.ndarray:
    """n x dim L2-normalised geo embeddings of POIs (rows follow the input order)."""
    a = adjacency(np.asarray(lat, float), np.asarray(lon, float), transitions, params)
    emb = embed_sparse(lazy_walk_matrix(a), dim, oversample, power_iters, seed)[: len(lat)]
    if emb.shape[1] < dim:
        emb = np.pad(emb, ((0, 0), (0, dim - emb.shape[1])))
    return normalize_rows(emb)[0]
