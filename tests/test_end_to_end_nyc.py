"""End to end on the full bundled Foursquare NYC data: ingest -> features -> sequences."""
import numpy as np
import polars as pl
import pytest

from simcit.cli import run_stage
from tests.conftest import NYC_CONFIG

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_full_nyc_pipeline(spark, tmp_path):
    lake = tmp_path / "lake"
    ingest = run_stage("ingest", str(NYC_CONFIG), str(lake))
    assert ingest.rows_rejected == 0
    assert ingest.rows_out == 5_135 + 147_938
    features = run_stage("features", str(NYC_CONFIG), str(lake))
    sequences = run_stage("sequences", str(NYC_CONFIG), str(lake))

    f = pl.read_delta(str(lake / "nyc" / "item_features"))
    assert f.height == 5_135 and f["item_id"].n_unique() == 5_135
    assert f["geo_emb"].null_count() == 0 and f["h3_r8"].null_count() == 0
    # 125 POIs have neither a name nor a category: no text, so no text embedding (not a fake one)
    items = pl.read_delta(str(lake / "nyc" / "items"))
    assert f["text_emb"].null_count() == items.filter(pl.col("text") == "").height
    assert f["cf_emb"].null_count() < 200
    assert features.extra["geo"] == "5,135"

    s = pl.read_delta(str(lake / "nyc" / "sequences"))
    assert sequences.rows_out == s.height == 3 * 1_083
    test = s.filter(pl.col("split") == "test")
    assert test["history"].list.len().max() == 1000
    # The test target is each user's last check-in: it must not be inside the valid history.
    valid = s.filter(pl.col("split") == "valid").select("user_id", pl.col("target").alias("valid_target"))
    joined = test.join(valid, on="user_id")
    assert (joined["history"].list.last() == joined["valid_target"]).all()

    # Geo embeddings on real NYC points: nearer POIs are more similar than far ones.
    geo = np.stack(f.sort("item_id")["geo_emb"].to_list())
    pts = items.sort("item_id").select("latitude", "longitude").to_numpy()
    from geo.distance import haversine_m

    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(pts), 20000), rng.integers(0, len(pts), 20000)
    d = haversine_m(pts[i, 0], pts[i, 1], pts[j, 0], pts[j, 1])
    cos = (geo[i] * geo[j]).sum(1)
    assert cos[(d < 300) & (i != j)].mean() > cos[d > 10000].mean() + 0.1
