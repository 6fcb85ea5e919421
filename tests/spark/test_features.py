"""features on a real NYC slice: every view, training-only interactions, Spark == reference."""
import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp

from geo.poi_graph import GraphParams
from geo.poi_graph import spatial_edges as reference_spatial_edges
from geo.randomized_eigen import embed_sparse
from simcit.cli import run_stage
from simcit.config import GeoViewConfig, load_config
from simcit.lake import Lake
from tests.conftest import NYC_CONFIG, write_config

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def nyc_features(tmp_path_factory, nyc_slice, spark):
    out = tmp_path_factory.mktemp("features")
    cfg = write_config(out, NYC_CONFIG, nyc_slice / "pois.csv.gz", nyc_slice / "checkins.csv.gz")
    lake = out / "lake"
    run_stage("ingest", str(cfg), str(lake))
    summary = run_stage("features", str(cfg), str(lake))
    feats = pl.read_delta(str(lake / "nyc" / "item_features"))
    return {"lake": lake, "cfg": cfg, "feats": feats, "summary": summary, "slice": nyc_slice}


def _training_items(slice_dir):
    ck = pd.read_csv(slice_dir / "checkins.csv.gz", dtype={"poi_id": str, "user_id": str})
    ck["row"] = np.arange(len(ck))
    ck = ck.sort_values(["user_id", "utc_ts", "row", "poi_id"])
    ck["pos"] = ck.groupby("user_id").cumcount()
    ck["n"] = ck.groupby("user_id")["poi_id"].transform("size")
    train = ck[(ck["n"] < 3) | (ck["pos"] < ck["n"] - 2)]
    return set(train["poi_id"]), set(ck["poi_id"])


def test_every_item_has_its_views(nyc_features):
    f = nyc_features["feats"]
    items = pl.read_delta(str(nyc_features["lake"] / "nyc" / "items"))
    assert f.height == items.height and f["item_id"].n_unique() == f.height
    with_text = items.filter(pl.col("text") != "")["item_id"]
    text = f.filter(pl.col("item_id").is_in(with_text.implode()))["text_emb"]
    assert text.null_count() == 0
    emb = np.stack(text.to_list())
    assert emb.shape[1] == 384 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-4)
    geo = np.stack(f["geo_emb"].to_list())
    assert geo.shape == (f.height, 64) and np.allclose(np.linalg.norm(geo, axis=1), 1, atol=1e-4)
    assert f["image_emb"].null_count() == f.height  # NYC has no images
    assert f["h3_r9"].str.len_chars().eq(15).all() and f["h3_r7"].null_count() == 0


def test_cf_sees_training_interactions_only(nyc_features):
    f = nyc_features["feats"]
    train_items, all_items = _training_items(nyc_features["slice"])
    with_cf = set(f.filter(pl.col("cf_emb").is_not_null())["item_id"])
    assert with_cf and with_cf <= train_items
    held_out_only = all_items - train_items
    assert held_out_only, "the slice should contain items seen only as valid/test targets"
    assert not (held_out_only & with_cf)
    never_visited = set(f["item_id"]) - all_items
    assert never_visited and not (never_visited & with_cf)
    cf = np.stack(f.filter(pl.col("cf_emb").is_not_null())["cf_emb"].to_list())
    assert cf.shape[1] == 64 and np.allclose(np.linalg.norm(cf, axis=1), 1, atol=1e-4)


def test_spark_spatial_edges_equal_the_reference(nyc_features, spark):
    from simcit.features.geo_graph import spatial_edges
    from simcit.features.h3_view import poi_cells

    cfg = GeoViewConfig(max_neighbors=6)
    items = spark.read.parquet(*Lake(nyc_features["lake"], "nyc").file_uris("items"))
    cells = poi_cells(items, cfg.ring_resolution, cfg.ring_k, cfg.cell_resolutions)
    got = {(r["src"], r["dst"]): r["w"] for r in spatial_edges(cells, cfg).collect()}
    pdf = items.select("item_id", "latitude", "longitude").toPandas()
    ids = pdf.item_id.to_numpy()
    ref = reference_spatial_edges(pdf.latitude.to_numpy(), pdf.longitude.to_numpy(), GraphParams(max_neighbors=6), ids)
    want = {(ids[i], ids[j]): w for (i, j), w in ref.items()}
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)


def test_distributed_eigensolver_matches_in_memory(spark):
    from simcit.features.distributed_eigen import top_eigen_embedding

    rng = np.random.default_rng(0)
    n = 120
    labels = rng.integers(0, 3, n)
    a = (rng.random((n, n)) < np.where(labels[:, None] == labels[None, :], 0.2, 0.01)).astype(float)
    a = np.triu(a, 1)
    m = sp.csr_matrix(a + a.T + np.eye(n))
    coo = m.tocoo()
    edges = spark.createDataFrame(
        pd.DataFrame({"src": coo.row.astype(str), "dst": coo.col.astype(str), "w": coo.data})
    )
    nodes = spark.createDataFrame(pd.DataFrame({"id": np.arange(n).astype(str)}))
    out = top_eigen_embedding(edges, nodes, dim=3, oversample=8, power_iters=6, seed=1).toPandas()
    got = np.stack(out.set_index("id").loc[np.arange(n).astype(str), "emb"].to_list())
    ref = embed_sparse(m, 3, 8, 6, seed=5)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    # Same subspace (up to rotation): principal angle cosines ~ 1.
    qa, _ = np.linalg.qr(got)
    qb, _ = np.linalg.qr(ref)
    assert np.linalg.svd(qa.T @ qb, compute_uv=False).min() > 0.98


def test_summary_reports_coverage(nyc_features):
    s = nyc_features["summary"]
    assert s.rows_in == s.rows_out == nyc_features["feats"].height
    assert s.extra["geo"] == f"{s.rows_out:,}"
    assert load_config(nyc_features["cfg"]).namespace == "nyc"


def test_cooccurrence_counts_within_window(spark):
    from simcit.features.cf_graph import cooccurrence_counts, ppmi

    rows = [("u", "a", 0), ("u", "b", 1), ("u", "c", 2), ("u", "a", 3), ("v", "x", 0), ("v", "y", 1), ("w", "z", 0)]
    df = spark.createDataFrame(pd.DataFrame(rows, columns=["user_id", "item_id", "pos"]))
    got = {(r.src, r.dst): r.c for r in cooccurrence_counts(df, 2).collect()}
    # u: a b c a -> offset 1: ab bc ca; offset 2: ac ba; counted in both directions
    assert got == {("a", "b"): 2, ("b", "a"): 2, ("a", "c"): 2, ("c", "a"): 2, ("b", "c"): 1, ("c", "b"): 1,
                   ("x", "y"): 1, ("y", "x"): 1}
    scored = {(r.src, r.dst): r.w for r in ppmi(cooccurrence_counts(df, 2), 1).collect()}
    total, m = 12.0, {"a": 4, "b": 3, "c": 3, "x": 1, "y": 1}
    for (i, j), w in scored.items():
        assert abs(w - np.log(got[(i, j)] * total / (m[i] * m[j]))) < 1e-9 and w > 0
