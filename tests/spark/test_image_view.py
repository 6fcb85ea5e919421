"""image view on real photographs (scikit-learn's two sample JPEGs) and an unreadable one."""
import os

import numpy as np
import polars as pl
import pytest
import sklearn
import yaml

from simcit.cli import run_stage

pytestmark = pytest.mark.spark

IMAGES = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")


def test_image_embeddings_and_unreadable_image_reject(spark, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text(
        "sku,title,photo\n"
        f"china,Summer palace photo,{IMAGES}/china.jpg\n"
        f"flower,Flower close-up,{IMAGES}/flower.jpg\n"
        "missing,Product whose photo is gone,missing.jpg\n"
        "noimage,Product without photo,\n"
    )
    inter = tmp_path / "inter.csv"
    inter.write_text("u,i,t\n" + "".join(f"u{k},{i},{j}\n" for k in range(3) for j, i in enumerate(["china", "flower", "noimage", "china"])))
    cfg = {
        "namespace": "img",
        "dataset": {
            "name": "img", "items": str(items), "interactions": str(inter),
            "item_columns": {"item_id": "sku", "image_uri": "photo"},
            "interaction_columns": {"user_id": "u", "item_id": "i", "ts": "t", "ts_format": "ordinal"},
            "text_template": ["{title}"],
        },
        "features": {"geo": {"enabled": False}, "cf": {"enabled": False}},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    lake = tmp_path / "lake"
    run_stage("ingest", str(path), str(lake))
    summary = run_stage("features", str(path), str(lake))
    f = pl.read_delta(str(lake / "img" / "item_features")).sort("item_id")
    emb = {r["item_id"]: r["image_emb"] for r in f.iter_rows(named=True)}
    china, flower = np.array(emb["china"]), np.array(emb["flower"])
    assert china.shape == (1280,) and np.isclose(np.linalg.norm(china), 1, atol=1e-4)
    assert float(china @ flower) < 0.6  # different pictures, different embeddings
    assert emb["missing"] is None and emb["noimage"] is None
    rejects = pl.read_delta(str(lake / "img" / "rejects")).filter(pl.col("source") == "features.image")
    assert rejects.height == 1 and summary.rows_rejected == 1
    assert "FileNotFoundError" in rejects["reason"][0] and "missing.jpg" in rejects["record"][0]
    # relative image paths were resolved against the items file's folder at ingest
    uris = pl.read_delta(str(lake / "img" / "items")).filter(pl.col("item_id") == "missing")["image_uri"][0]
    assert uris == f"{tmp_path}/missing.jpg"
