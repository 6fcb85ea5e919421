"""A small synthetic ``item_features`` table (schema ITEM_FEATURES) with missing views.

Items come from latent clusters; each view is a fixed random map of the item's latent plus noise,
L2-normalised, so views of one item agree (what the contrastive loss learns from). Small dims
keep training fast; the dims are inferred from the data by the trainer.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from simcit.schemas import ITEM_FEATURES

DIMS = {"text": 24, "geo": 8, "cf": 8}
COLUMNS = {"text": "text_emb", "geo": "geo_emb", "cf": "cf_emb"}
NO_VIEW_IDS = ("item_nv0", "item_nv1", "item_nv2")  # items without any view: must be skipped


def item_features_table(n: int = 1200, seed: int = 0, missing: float = 0.1) -> tuple[pa.Table, dict]:
    """Returns the table and the raw arrays (view -> [n, d] float32 with NaN rows where null)."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(12, 8)) * 2.0
    latent = protos[rng.integers(12, size=n)] + 0.7 * rng.normal(size=(n, 8))
    ids = [f"item_{i:05d}" for i in range(n)]
    columns: dict[str, pa.Array] = {"item_id": pa.array(ids + list(NO_VIEW_IDS))}
    raw = {}
    for view, d in DIMS.items():
        x = latent @ rng.normal(size=(8, d)) + 0.3 * rng.normal(size=(n, d))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        absent = rng.random(n) < (missing if view != "geo" else 0.0)
        raw[view] = np.where(absent[:, None], np.nan, x)
        values = [None if a else row.tolist() for a, row in zip(absent, x)] + [None] * len(NO_VIEW_IDS)
        columns[COLUMNS[view]] = pa.array(values, type=pa.list_(pa.field("element", pa.float32())))
    total = n + len(NO_VIEW_IDS)
    columns["image_emb"] = pa.nulls(total, type=pa.list_(pa.field("element", pa.float32())))
    for r in (7, 8, 9):
        columns[f"h3_r{r}"] = pa.nulls(total, type=pa.string())
    return pa.table(columns).select(ITEM_FEATURES.names).cast(ITEM_FEATURES), raw
