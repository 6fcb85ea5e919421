"""ingest on real NYC rows with planted bad rows: each bad row lands in rejects, nothing else."""
import gzip
import json

import pandas as pd
import polars as pl
import pytest

from simcit.cli import run_stage
from tests.conftest import NYC_CONFIG, write_config

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def planted(tmp_path_factory, nyc_slice):
    out = tmp_path_factory.mktemp("planted")
    pois = pd.read_csv(nyc_slice / "pois.csv.gz", dtype=str, keep_default_na=False)
    ck = pd.read_csv(nyc_slice / "checkins.csv.gz", dtype=str, keep_default_na=False)
    good_poi = pois.iloc[0].to_dict()

    def poi(**kw):
        return {**good_poi, **kw}

    bad_pois = [
        (poi(poi_id="", fsq_name="no id"), "missing item_id"),
        (poi(fsq_name="duplicate of the first row"), "duplicate item_id"),
        (poi(poi_id="900001", latitude="95.1"), "coordinates out of range"),
        (poi(poi_id="900002", longitude="abc"), "unparseable coordinate"),
        (poi(poi_id="900003", latitude="0", longitude="0"), "coordinates exactly (0, 0)"),
        (poi(poi_id="900004", longitude=""), "only one of latitude/longitude given"),
    ]
    pois_out = pd.concat([pois, pd.DataFrame([p for p, _ in bad_pois])], ignore_index=True)
    good_ck = ck.iloc[0].to_dict()
    bad_ck = [
        ({**good_ck, "user_id": ""}, "missing user_id"),
        ({**good_ck, "utc_ts": "yesterday"}, "unparseable timestamp"),
        ({**good_ck, "poi_id": "999999"}, "unknown item_id"),
        ({**good_ck, "poi_id": "900001"}, "unknown item_id"),  # its POI was rejected
        ({**good_ck, "poi_id": ""}, "missing item_id"),
    ]
    ck_out = pd.concat([ck, pd.DataFrame([c for c, _ in bad_ck])], ignore_index=True)
    with gzip.open(out / "pois.csv.gz", "wt") as fh:
        pois_out.to_csv(fh, index=False)
        fh.write("123456,too,few,fields\n")  # malformed line
    with gzip.open(out / "checkins.csv.gz", "wt") as fh:
        ck_out.to_csv(fh, index=False)
    cfg = write_config(out, NYC_CONFIG, out / "pois.csv.gz", out / "checkins.csv.gz")
    lake = out / "lake"
    summary = run_stage("ingest", str(cfg), str(lake))
    return {
        "summary": summary, "lake": lake, "n_pois": len(pois), "n_ck": len(ck),
        "bad_pois": bad_pois, "bad_ck": bad_ck,
    }


def test_counts_reconcile_exactly(spark, planted):
    s = planted["summary"]
    n_bad = len(planted["bad_pois"]) + 1 + len(planted["bad_ck"])
    assert s.rows_rejected == n_bad
    assert s.rows_in == planted["n_pois"] + len(planted["bad_pois"]) + 1 + planted["n_ck"] + len(planted["bad_ck"])
    assert s.rows_out == planted["n_pois"] + planted["n_ck"]
    lake = planted["lake"] / "nyc"
    assert pl.read_delta(str(lake / "items")).height == planted["n_pois"]
    assert pl.read_delta(str(lake / "interactions")).height == planted["n_ck"]


def test_each_planted_row_is_rejected_with_its_reason(spark, planted):
    rejects = pl.read_delta(str(planted["lake"] / "nyc" / "rejects"))
    items = rejects.filter(pl.col("source") == "items")
    reasons = sorted(items["reason"].to_list())
    expected = sorted([r for _, r in planted["bad_pois"]] + ["malformed row"])
    assert len(reasons) == len(expected)
    for reason, want in zip(reasons, expected):
        assert reason.startswith(want), (reason, want)
    dup = items.filter(pl.col("reason").str.starts_with("duplicate"))
    assert json.loads(dup["record"][0])["fsq_name"] == "duplicate of the first row"
    inter = rejects.filter(pl.col("source") == "interactions")
    got = sorted(inter["reason"].to_list())
    want = sorted(r for _, r in planted["bad_ck"])
    assert len(got) == len(want) and all(g.startswith(w) for g, w in zip(got, want))
    assert inter.filter(pl.col("reason").str.starts_with("unparseable"))["record"].str.contains("yesterday").all()


def test_kept_items_have_canonical_columns(spark, planted):
    items = pl.read_delta(str(planted["lake"] / "nyc" / "items"))
    assert items.columns == ["item_id", "text", "latitude", "longitude", "image_uri", "attributes"]
    assert items["item_id"].n_unique() == items.height
    assert items["latitude"].is_between(40, 41.5).all()
    first = items.filter(pl.col("item_id") == "1")
    if first.height:
        assert first["text"][0].startswith("Fat Cat. Arts and Entertainment")
    inter = pl.read_delta(str(planted["lake"] / "nyc" / "interactions"))
    assert inter.schema["ts"] == pl.Datetime("us", "UTC")
