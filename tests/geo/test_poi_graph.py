import numpy as np
import pandas as pd

from geo.distance import haversine_m
from geo.poi_graph import GraphParams, adjacency, geo_embedding, spatial_edges
from tests.conftest import DATA


def _nyc():
    pois = pd.read_csv(DATA / "foursquare_nyc" / "pois.csv.gz")
    return pois.latitude.to_numpy(), pois.longitude.to_numpy()


def test_spatial_edges_are_symmetric_near_and_bounded():
    lat, lon = _nyc()
    p = GraphParams(max_neighbors=8)
    edges = spatial_edges(lat, lon, p)
    assert edges and all(edges[(j, i)] == w for (i, j), w in edges.items())
    out_degree = pd.Series([i for i, _ in edges]).value_counts()
    # symmetrised kNN: each POI chose at most 8, others may have chosen it too
    assert out_degree.median() <= 8
    d = np.array([haversine_m(lat[i], lon[i], lat[j], lon[j]) for i, j in list(edges)[:2000]])
    assert d.max() < 3 * 200 * 2  # inside the 1-ring at res 9 (edge ~200 m)


def test_adjacency_adds_cells_and_mobility():
    lat, lon = _nyc()
    n = len(lat)
    a = adjacency(lat[:500], lon[:500], (np.array([0, 0, 1]), np.array([1, 1, 2])), GraphParams())
    assert a.shape[0] > 500  # cell nodes follow the POIs
    assert (a != a.T).nnz == 0
    assert a[0, 1] >= np.log1p(2)  # two transitions 0 -> 1, symmetrised
    del n


def test_nearer_pois_get_more_similar_geo_embeddings_on_real_nyc():
    lat, lon = _nyc()
    emb = geo_embedding(lat, lon, dim=64, power_iters=2)
    assert emb.shape == (len(lat), 64)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(lat), 40000), rng.integers(0, len(lat), 40000)
    d = haversine_m(lat[i], lon[i], lat[j], lon[j])
    cos = (emb[i] * emb[j]).sum(1)
    near, mid, far = cos[(d < 300) & (i != j)], cos[(d >= 300) & (d < 2000)], cos[d > 10000]
    assert near.mean() > mid.mean() > far.mean()
    assert near.mean() > far.mean() + 0.2
