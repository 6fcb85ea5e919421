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


def _points(spark, lake, cfg):
    from simcit.features.geo_graph import located_points
    from simcit.features.h3_view import poi_cells
    from simcit.features.node_index import dense_index

    items = spark.read.parquet(*Lake(lake, "nyc").file_uris("items"))
    index, n = dense_index(items, "item_id")
    cells = poi_cells(items, cfg.ring_resolution, cfg.ring_k, cfg.cell_resolutions, cfg.region_resolution)
    return items, index, n, located_points(cells, index)


@pytest.mark.parametrize("region_resolution", [5, 8])  # 8: many small regions, most POIs in a halo
def test_spark_spatial_edges_equal_the_reference(nyc_features, spark, region_resolution):
    from simcit.features.geo_graph import spatial_edges

    cfg = GeoViewConfig(max_neighbors=6, region_resolution=region_resolution)
    items, index, _, points = _points(spark, nyc_features["lake"], cfg)
    names = {r["nid"]: r["item_id"] for r in index.collect()}
    got = {(names[r["src"]], names[r["dst"]]): r["w"] for r in spatial_edges(points, cfg).collect()}
    pdf = items.select("item_id", "latitude", "longitude").toPandas()
    ids = pdf.item_id.to_numpy()
    ref = reference_spatial_edges(pdf.latitude.to_numpy(), pdf.longitude.to_numpy(), GraphParams(max_neighbors=6), ids)
    want = {(ids[i], ids[j]): w for (i, j), w in ref.items()}
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)


def test_geo_adjacency_equals_the_reference(nyc_features, spark):
    """Spatial + training-part mobility + H3 hierarchy edges == geo.poi_graph.adjacency, and
    its lazy-walk normalisation on the blocks == geo.randomized_eigen.lazy_walk_matrix."""
    import h3
    from pyspark.sql import functions as F

    from geo import h3_cells
    from geo.graph_weights import consecutive_pairs
    from geo.poi_graph import adjacency
    from geo.randomized_eigen import lazy_walk_matrix
    from simcit.features.distributed_eigen import BlockMatrix
    from simcit.features.geo_graph import GEO_COMBINE, geo_adjacency_rows, lazy_walk
    from simcit.features.interaction_pairs import interaction_pair_counts
    from simcit.splits import training_interactions

    cfg = GeoViewConfig()
    items, index, _, points = _points(spark, nyc_features["lake"], cfg)
    inter = spark.read.parquet(*Lake(nyc_features["lake"], "nyc").file_uris("interactions"))
    train = training_interactions(inter)
    pairs = interaction_pair_counts(train, index, 0, cfg.mobility_max_gap_hours * 3600.0)
    matrix = BlockMatrix(geo_adjacency_rows(points, pairs, cfg), block_entries=5_000, combine=GEO_COMBINE)
    assert matrix.n_blocks > 2
    got = {(r.src, r.dst): r.w for r in matrix.entries_frame().collect()}
    matrix.transform(lazy_walk)
    got_walk = {(r.src, r.dst): r.w for r in matrix.entries_frame().collect()}
    matrix.release()

    pdf = items.select("item_id", "latitude", "longitude").toPandas()
    lat, lon = pdf.latitude.to_numpy(), pdf.longitude.to_numpy()
    row = {item: i for i, item in enumerate(pdf.item_id)}
    steps = train.select("user_id", "item_id", F.col("ts").cast("double").alias("t"), "pos").toPandas()
    steps = steps.sort_values(["user_id", "pos"])
    transitions = consecutive_pairs(
        steps.user_id.to_numpy(), steps.item_id.map(row).to_numpy(), steps.t.to_numpy(), cfg.mobility_max_gap_hours * 3600.0
    )
    assert len(transitions[0]) > 100
    params = GraphParams(cell_resolutions=tuple(cfg.cell_resolutions))
    ref = adjacency(lat, lon, transitions, params).tocoo()
    # Node names: item ids for POI rows, H3 cells (as ints) for the cell rows, in reference order.
    names = list(pdf.item_id)
    seen = {}
    for r in cfg.cell_resolutions:
        for c in h3_cells.cells(lat, lon, r):
            seen.setdefault(c, len(seen))
    names += [h3.str_to_int(c) for c in seen]
    nid_name = {r["nid"]: r["item_id"] for r in index.collect()}
    want = {(names[i], names[j]): w for i, j, w in zip(ref.row, ref.col, ref.data)}
    got = {(nid_name.get(a, a), nid_name.get(b, b)): w for (a, b), w in got.items()}
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)
    walk = lazy_walk_matrix(adjacency(lat, lon, transitions, params)).tocoo()
    want = {(names[i], names[j]): w for i, j, w in zip(walk.row, walk.col, walk.data)}
    got_walk = {(nid_name.get(a, a), nid_name.get(b, b)): w for (a, b), w in got_walk.items()}
    assert got_walk.keys() == want.keys()
    assert all(abs(got_walk[k] - want[k]) < 1e-12 for k in want)


def _old_spatial_join(cells, cfg):
    """The former candidate-pair join (explode ring + equi-join + windows), as the reference for
    the per-cell candidate cap."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from geo.h3_cells import edge_length_m
    from simcit.features.geo_graph import haversine_m

    left = cells.select(F.col("item_id").alias("src"), F.col("latitude").alias("lat1"),
                        F.col("longitude").alias("lon1"), F.explode("ring").alias("cell"))
    right = cells.select(F.col("item_id").alias("dst"), F.col("latitude").alias("lat2"),
                         F.col("longitude").alias("lon2"), "cell")
    per_cell = Window.partitionBy("cell").orderBy(F.xxhash64("dst"), "dst")
    right = right.withColumn("slot", F.row_number().over(per_cell)).where(F.col("slot") <= cfg.max_cell_candidates)
    pairs = left.join(right, on="cell").where(F.col("src") != F.col("dst"))
    pairs = pairs.withColumn("d", haversine_m(F.col("lat1"), F.col("lon1"), F.col("lat2"), F.col("lon2")))
    kept = pairs.withColumn("rank", F.row_number().over(Window.partitionBy("src").orderBy("d", "dst")))
    kept = kept.where(F.col("rank") <= cfg.max_neighbors)
    scale = edge_length_m(cfg.ring_resolution)
    return kept.select("src", "dst", (cfg.spatial_weight / (1.0 + F.col("d") / scale)).alias("w"))


def test_spatial_edges_keep_the_per_cell_candidate_cap(nyc_features, spark):
    from simcit.features.geo_graph import spatial_edges
    from simcit.features.h3_view import poi_cells

    # A cap of 3 bites in most populated NYC cells; res-7 regions put many cells in halos.
    cfg = GeoViewConfig(max_neighbors=5, max_cell_candidates=3, region_resolution=7)
    items, index, _, points = _points(spark, nyc_features["lake"], cfg)
    names = {r["nid"]: r["item_id"] for r in index.collect()}
    got = {(names[r["src"]], names[r["dst"]]): r["w"] for r in spatial_edges(points, cfg).collect()}
    cells = poi_cells(items, cfg.ring_resolution, cfg.ring_k, cfg.cell_resolutions)
    directed = {(r["src"], r["dst"]): r["w"] for r in _old_spatial_join(cells, cfg).collect()}
    want = {}
    for (a, b), w in directed.items():
        for key in ((a, b), (b, a)):
            want[key] = max(want.get(key, 0.0), w)
    assert got.keys() == want.keys()
    assert all(abs(got[k] - want[k]) < 1e-9 for k in want)


def test_distributed_eigensolver_matches_in_memory(spark):
    from simcit.features.distributed_eigen import BlockMatrix, top_eigen_embedding

    rng = np.random.default_rng(0)
    n = 120
    labels = rng.integers(0, 3, n)
    a = (rng.random((n, n)) < np.where(labels[:, None] == labels[None, :], 0.2, 0.01)).astype(float)
    a = np.triu(a, 1)
    m = sp.csr_matrix(a + a.T + np.eye(n))
    coo = m.tocoo()
    edges = spark.createDataFrame(
        pd.DataFrame({"src": coo.row.astype(np.int64), "dst": coo.col.astype(np.int64), "w": coo.data})
    )
    ref = embed_sparse(m, 3, 8, 6, seed=5)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    qb, _ = np.linalg.qr(ref)
    for block_entries in (10**6, 150):  # one block per core / many blocks gathering rows
        matrix = BlockMatrix(edges, block_entries=block_entries)
        assert matrix.entries == m.nnz and matrix.nodes == n
        assert (matrix.n_blocks == 1) if block_entries > 10**5 else (matrix.n_blocks > 2)
        out = top_eigen_embedding(matrix, dim=3, oversample=8, power_iters=6, seed=1).toPandas()
        got = np.stack(out.set_index("id").loc[np.arange(n), "emb"].to_list())
        # Same subspace (up to rotation): principal angle cosines ~ 1.
        qa, _ = np.linalg.qr(got)
        assert np.linalg.svd(qa.T @ qb, compute_uv=False).min() > 0.98


def test_summary_reports_coverage(nyc_features):
    s = nyc_features["summary"]
    assert s.rows_in == s.rows_out == nyc_features["feats"].height
    assert s.extra["geo"] == f"{s.rows_out:,}"
    assert load_config(nyc_features["cfg"]).namespace == "nyc"


def _pairs_by_name(spark, rows, window, gap_s):
    from pyspark.sql import functions as F

    from simcit.features.interaction_pairs import interaction_pair_counts
    from simcit.features.node_index import dense_index

    df = spark.createDataFrame(pd.DataFrame(rows, columns=["user_id", "item_id", "pos", "t"]))
    df = df.withColumn("ts", F.timestamp_seconds("t"))
    index, _ = dense_index(df, "item_id")
    names = {r["nid"]: r["item_id"] for r in index.collect()}
    return interaction_pair_counts(df, index, window, gap_s), index, names


def test_cooccurrence_counts_within_window(spark):
    from simcit.config import CFViewConfig
    from simcit.features.cf_graph import cf_matrix, cooccurrence_counts

    rows = [("u", "a", 0, 0), ("u", "b", 1, 10), ("u", "c", 2, 20), ("u", "a", 3, 30), ("v", "x", 0, 0),
            ("v", "y", 1, 10), ("w", "z", 0, 0)]
    pairs, _, names = _pairs_by_name(spark, rows, 2, None)
    got = {(names[r.src], names[r.dst]): r.c for r in cooccurrence_counts(pairs).collect()}
    # u: a b c a -> offset 1: ab bc ca; offset 2: ac ba; counted in both directions
    assert got == {("a", "b"): 2, ("b", "a"): 2, ("a", "c"): 2, ("c", "a"): 2, ("b", "c"): 1, ("c", "b"): 1,
                   ("x", "y"): 1, ("y", "x"): 1}
    matrix = cf_matrix(pairs, CFViewConfig(min_count=1))
    scored = {(names[r.src], names[r.dst]): r.w for r in matrix.entries_frame().collect()}
    total, m = 12.0, {"a": 4, "b": 3, "c": 3, "x": 1, "y": 1}
    want = {k: np.log(c * total / (m[k[0]] * m[k[1]])) for k, c in got.items()}
    assert scored.keys() == {k for k, w in want.items() if w > 0}
    assert all(abs(w - want[k]) < 1e-9 for k, w in scored.items())
    assert matrix.nodes == len({i for i, _ in scored})  # items without a positive entry are no nodes
    matrix.release()
    # Two hubs meeting once: PMI(a, b) = log(1 * 22 / (6 * 6)) < 0, so that entry is dropped.
    rows = [("u1", x, p, 0) for p, x in enumerate(["a", "x1", "a", "x2", "a", "x3"])]
    rows += [("u2", x, p, 0) for p, x in enumerate(["b", "y1", "b", "y2", "b", "y3"])] + [("u3", "a", 0, 0), ("u3", "b", 1, 0)]
    pairs, _, names = _pairs_by_name(spark, rows, 1, None)
    matrix = cf_matrix(pairs, CFViewConfig(min_count=1))
    scored = {(names[r.src], names[r.dst]): r.w for r in matrix.entries_frame().collect()}
    assert ("a", "b") not in scored and ("b", "a") not in scored and len(scored) == 12
    assert abs(scored[("a", "x1")] - np.log(2 * 22 / (6 * 2))) < 1e-9
    matrix.release()


def test_mobility_pairs_respect_gap_and_self_moves(spark):
    rows = [("u", "a", 0, 0), ("u", "b", 1, 60), ("u", "b", 2, 120), ("u", "c", 3, 10**6), ("v", "c", 0, 0),
            ("v", "d", 1, 30), ("v", "c", 2, 40)]
    pairs, _, names = _pairs_by_name(spark, rows, 1, 3600.0)
    mob = {tuple(sorted((names[r.src], names[r.dst]))): r.mob_c for r in pairs.collect() if r.mob_c}
    # a->b kept; b->b self move; b->c gap too long; c->d and d->c: one unordered pair, count 2.
    assert mob == {("a", "b"): 1, ("c", "d"): 2}


def _old_cooccurrence(train, window):
    """The former Spark implementation (array transforms + string-key groupBys)."""
    from pyspark.sql import functions as F

    seqs = train.groupBy("user_id").agg(F.array_sort(F.collect_list(F.struct("pos", "item_id"))).alias("ev"))
    pairs = F.flatten(F.transform(F.sequence(F.lit(1), F.lit(window)), lambda o: F.when(
        F.size("ev") > o,
        F.transform(F.sequence(F.lit(0), F.size("ev") - o - 1), lambda i: F.struct(
            F.element_at("ev", i + 1)["item_id"].alias("src"), F.element_at("ev", i + o + 1)["item_id"].alias("dst"))),
    ).otherwise(F.array().cast("array<struct<src:string,dst:string>>"))))
    ex = seqs.select(F.explode(pairs).alias("p")).select("p.src", "p.dst").where(F.col("src") != F.col("dst"))
    counts = ex.groupBy("src", "dst").agg(F.count(F.lit(1)).cast("double").alias("c"))
    swapped = counts.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "c")
    return counts.unionByName(swapped).groupBy("src", "dst").agg(F.sum("c").alias("c"))


def _old_mobility_counts(train, max_gap_hours):
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    order = Window.partitionBy("user_id").orderBy("ts", "seq_no", "item_id")
    steps = train.select(F.lag("item_id").over(order).alias("src"), F.col("item_id").alias("dst"),
                         (F.col("ts").cast("double") - F.lag("ts").over(order).cast("double")).alias("gap_s"))
    moves = steps.where(F.col("src").isNotNull() & (F.col("src") != F.col("dst"))
                        & (F.col("gap_s") <= max_gap_hours * 3600.0))
    counts = moves.groupBy("src", "dst").agg(F.count(F.lit(1)).cast("double").alias("c"))
    swapped = counts.select(F.col("dst").alias("src"), F.col("src").alias("dst"), "c")
    return counts.unionByName(swapped).groupBy("src", "dst").agg(F.sum("c").alias("c"))


def test_pair_pass_equals_the_old_spark_joins_on_training_part(nyc_features, spark):
    from simcit.features.cf_graph import cooccurrence_counts
    from simcit.features.interaction_pairs import interaction_pair_counts, symmetric_rows
    from simcit.features.node_index import dense_index
    from simcit.splits import training_interactions

    lake = Lake(nyc_features["lake"], "nyc")
    inter = spark.read.parquet(*lake.file_uris("interactions"))
    train = training_interactions(inter).cache()
    index, _ = dense_index(spark.read.parquet(*lake.file_uris("items")), "item_id")
    names = {r["nid"]: r["item_id"] for r in index.collect()}
    pairs = interaction_pair_counts(train, index, 3, 24 * 3600.0).cache()
    cf = {(names[r.src], names[r.dst]): r.c for r in cooccurrence_counts(pairs).collect()}
    assert cf == {(r.src, r.dst): r.c for r in _old_cooccurrence(train, 3).collect()}
    mob = {(names[r.src], names[r.dst]): r.c for r in symmetric_rows(pairs, "mob_c").collect()}
    want = {(r.src, r.dst): r.c for r in _old_mobility_counts(train, 24).collect()}
    assert mob == want and len(mob) > 100
    # Training part only: no pair touches an item seen only as a valid/test target.
    train_items, all_items = _training_items(nyc_features["slice"])
    seen = {a for a, _ in cf} | {a for a, _ in mob}
    assert seen <= train_items and (all_items - train_items)
    train.unpersist(), pairs.unpersist()


def test_dense_index_ranks_sorted_values(spark):
    from simcit.features.node_index import dense_index

    values = ["q", "b", None, "zz", "a", "b", "m"] * 3
    df = spark.createDataFrame(pd.DataFrame({"v": values})).repartition(5)
    index, n = dense_index(df, "v", offset=100)
    got = {r["v"]: r["nid"] for r in index.collect()}
    assert n == 5 and got == {"a": 100, "b": 101, "m": 102, "q": 103, "zz": 104}
    # Ordered by another column first (nulls last), as items are numbered by their H3 cell.
    cells = {"a": "8a2", "b": None, "m": "8a1", "q": "8a1", "zz": None}
    df = spark.createDataFrame(pd.DataFrame({"v": list(cells), "cell": list(cells.values())})).repartition(3)
    index, n = dense_index(df, "v", order_by="cell")
    got = {r["v"]: r["nid"] for r in index.collect()}
    assert n == 5 and got == {"m": 0, "q": 1, "a": 2, "b": 3, "zz": 4}


def test_block_keys_spread_over_spark_hash_partitions(spark):
    from pyspark.sql import functions as F

    from simcit.features.distributed_eigen import spark_int_hash, spread_keys

    values = [0, 1, 2, 5, -7, 123456, 2**31 - 1, -(2**31)]
    df = spark.createDataFrame(pd.DataFrame({"v": np.array(values, dtype=np.int32)}))
    assert [r[0] for r in df.select(F.hash("v")).collect()] == [spark_int_hash(v) for v in values]
    keys = spread_keys(6, 4)
    parts = spark.createDataFrame(pd.DataFrame({"v": np.array(keys, dtype=np.int32)}))
    assert [r[0] for r in parts.select(F.pmod(F.hash("v"), F.lit(4))).collect()] == [0, 1, 2, 3, 0, 1]
