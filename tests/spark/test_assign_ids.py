"""assign-ids: coverage, collision-free SIDs, refresh stability, determinism, quality figures."""
import json
import os

import numpy as np
import pyarrow as pa
import polars as pl
import pytest
import torch
import yaml

from simcit.cli import run_stage
from simcit.lake import Lake
from simcit.schemas import ITEM_FEATURES
from simcit.sids.sid_format import sid_string
from simcit.tokenizer import SimCITConfig, SimCITTokenizer, ViewBatch
from simcit.train.model_store import save_tokenizer, tokenizer_models_root

pytestmark = pytest.mark.spark


def _features(n: int, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, 16))

    def emb(dim, i):
        v = np.tile(centers[i % 6], dim // 16) + 0.3 * rng.normal(size=dim)
        return (v / np.linalg.norm(v)).astype(np.float32).tolist()

    ids = [f"item{start + i:05d}" for i in range(n)]
    text = [emb(384, i) for i in range(n)]
    geo = [None if i % 7 == 0 else emb(64, i) for i in range(n)]  # some items lack geo
    none = [None] * n
    return pa.table(
        {"item_id": ids, "text_emb": text, "image_emb": none, "geo_emb": geo, "cf_emb": none,
         "h3_r7": none, "h3_r8": none, "h3_r9": none},
        schema=ITEM_FEATURES,
    )


@pytest.fixture()
def setup(tmp_path):
    lake = Lake(tmp_path / "lake", "toy")
    lake.write_table("item_features", _features(240))
    torch.manual_seed(0)
    model = SimCITTokenizer(SimCITConfig(views={"text": 384, "geo": 64}, levels=2, codebook_size=4))
    data = lake.dataset("item_features").to_table()
    from simcit.train.view_batches import to_view_batch

    model.init_codebooks(to_view_batch(data, {"text": 384, "geo": 64}))
    model.eval()
    saved = save_tokenizer(model, tokenizer_models_root(lake))
    items = tmp_path / "items.csv"
    items.write_text("id,name\n1,x\n")
    cfg = {
        "namespace": "toy",
        "dataset": {"name": "toy", "items": str(items), "interactions": str(items),
                    "item_columns": {"item_id": "id"},
                    "interaction_columns": {"user_id": "id", "item_id": "id", "ts": "id"},
                    "text_template": ["{name}"]},
        "tokenizer": {"kind": "simcit", "views": ["text", "geo"], "levels": 2, "codebook_size": 4},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert isinstance(ViewBatch, type)
    return lake, str(path), saved


def _table(lake) -> pl.DataFrame:
    return pl.read_delta(lake.table_path("semantic_ids")).sort("item_id")


def test_every_item_gets_a_unique_sid(spark, setup):
    lake, cfg, saved = setup
    summary = run_stage("assign-ids", cfg, str(lake.root))
    t = _table(lake)
    assert t.height == 240 and t["item_id"].n_unique() == 240
    assert t["sid"].n_unique() == 240
    assert (t["codes"].list.len() == 3).all()
    assert all(s == sid_string(c) for s, c in zip(t["sid"], t["codes"].to_list()))
    assert (t["tokenizer_version"] == saved.tokenizer_version).all()
    # K=4, L=2: at most 16 base codes for 240 items, so collisions are resolved by the last code,
    # numbered 0..n-1 within each group in item-id order.
    groups = t.with_columns(pl.col("codes").list.slice(0, 2).alias("base"), pl.col("codes").list.get(2).alias("d"))
    for _, g in groups.group_by("base"):
        g = g.sort("item_id")
        assert g["d"].to_list() == list(range(g.height))
    assert summary.extra["largest_group"] == groups.group_by("base").len()["len"].max()
    quality = json.load(open(os.path.join(saved.model_dir, "sid_quality-toy-semantic_ids.json")))
    assert quality["items"] == 240 and 0 < quality["unique_ratio_before_disambiguation"] <= 16 / 240
    assert len(quality["levels"]) == 2 and all(0 <= lv["gini"] <= 1 for lv in quality["levels"])


def test_rerun_is_identical_and_refresh_keeps_existing_sids(spark, setup):
    lake, cfg, _ = setup
    run_stage("assign-ids", cfg, str(lake.root))
    first = _table(lake)
    run_stage("assign-ids", cfg, str(lake.root))
    assert _table(lake).equals(first)  # byte-for-byte, created_at included

    # Refresh: 60 new items join the catalogue (and the features table gets a new version).
    lake.write_table("item_features", pa.concat_tables([_features(240), _features(60, start=240, seed=1)]))
    run_stage("assign-ids", cfg, str(lake.root))
    after = _table(lake)
    assert after.height == 300 and after["sid"].n_unique() == 300
    old = after.filter(pl.col("item_id").is_in(first["item_id"].implode()))
    assert old.equals(first)
    new_sids = set(after.filter(~pl.col("item_id").is_in(first["item_id"].implode()))["sid"])
    assert not new_sids & set(first["sid"])


def test_verified_quality_rejects_a_repeated_sid_and_counts_groups(spark):
    from simcit.stages.assign_ids import verified_quality

    ok = spark.createDataFrame([([1, 2, 0],), ([1, 2, 1],), ([3, 4, 0],)], "codes array<int>")
    figures = verified_quality(ok, levels=2, codebook_size=8)
    assert figures["items"] == 3 and figures["unique_base_sids"] == 2 and figures["largest_collision_group"] == 2
    assert [lv["used_codes"] for lv in figures["levels"]] == [2, 2]
    bad = spark.createDataFrame([([1, 2, 0],), ([1, 2, 0],), ([3, 4, 0],)], "codes array<int>")
    with pytest.raises(RuntimeError, match="semantic_ids__x: 1 duplicate SIDs"):
        verified_quality(bad, levels=2, codebook_size=8, table="semantic_ids__x")


def test_items_without_any_view_become_rejects(spark, setup):
    lake, cfg, _ = setup
    features = _features(240).to_pylist()
    for row in features[:5]:
        row["text_emb"], row["geo_emb"] = None, None  # none of the model's views
    lake.write_table("item_features", pa.Table.from_pylist(features, schema=ITEM_FEATURES))
    summary = run_stage("assign-ids", cfg, str(lake.root))
    t = _table(lake)
    assert t.height == 235 and t["sid"].n_unique() == 235
    assert summary.rows_rejected == 5
    rejects = pl.read_delta(lake.table_path("rejects")).filter(pl.col("source") == "assign_ids")
    assert sorted(json.loads(r)["item_id"] for r in rejects["record"]) == [f"item{i:05d}" for i in range(5)]
    assert rejects["reason"].str.contains("none of the tokenizer's views").all()


def test_a_model_whose_files_do_not_match_its_version_is_refused(spark, setup):
    lake, cfg, saved = setup
    config = os.path.join(saved.model_dir, "config.json")
    meta = json.load(open(config))
    meta["tokenizer_version"] = "0" * 16  # the weights no longer hash to the recorded version
    json.dump(meta, open(config, "w"))
    with pytest.raises(ValueError, match="do not match tokenizer_version 0000000000000000"):
        run_stage("assign-ids", cfg, str(lake.root))
    assert not lake.exists("semantic_ids")


def test_observed_quality_of_a_fresh_assignment():
    from simcit.stages.assign_ids import observed_quality

    usage = np.array([[3.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    figures = observed_quality({"n": 4, "first": 2, "last": 2}, usage)
    assert figures["items"] == 4 and figures["unique_base_sids"] == 2
    assert figures["unique_ratio_before_disambiguation"] == 0.5 and figures["largest_collision_group"] == 3
    assert [lv["used_codes"] for lv in figures["levels"]] == [2, 2]
    assert observed_quality({"n": 0, "first": None, "last": None}, np.zeros((2, 3)))["largest_collision_group"] == 0
