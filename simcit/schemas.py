"""Arrow schemas of every lakehouse table, in one place.

Every stage writes exactly these schemas (the lake layer casts to them before committing), so
downstream readers (polars, DuckDB, Spark, pandas) can rely on names, types and nullability.
Embeddings are ``list<float32>`` (Delta has no fixed-size list type); their length is fixed per
column and documented in the README.
"""
from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")
EMB = pa.list_(pa.field("element", pa.float32()))

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("latitude", pa.float64()),
        pa.field("longitude", pa.float64()),
        pa.field("image_uri", pa.string()),
        # Raw source columns named in ``dataset.item_columns.keep``.
        pa.field("attributes", pa.map_(pa.string(), pa.string())),
    ]
)

INTERACTIONS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),
        # Order of the row in its source: the deterministic tie-break for equal timestamps.
        pa.field("seq_no", pa.int64(), nullable=False),
    ]
)

REJECTS = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),   # e.g. "items", "interactions", "features.image"
        pa.field("reason", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),   # the raw row as JSON
        pa.field("source_row", pa.int64()),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)

ITEM_FEATURES = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("text_emb", EMB),    # 384-d MiniLM, L2-normalised; null when the item has no text
        pa.field("image_emb", EMB),   # 1280-d EfficientNet-Lite0, L2-normalised; null without image
        pa.field("geo_emb", EMB),     # geo.dim (64); null without coordinates
        pa.field("cf_emb", EMB),      # cf.dim (64); null for items absent from training sequences
        pa.field("h3_r7", pa.string()),
        pa.field("h3_r8", pa.string()),
        pa.field("h3_r9", pa.string()),
    ]
)

SEQUENCES = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),      # train | valid | test
        pa.field("history", pa.list_(pa.field("element", pa.string())), nullable=False),
        pa.field("history_ts", pa.list_(pa.field("element", TS)), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("target_ts", TS, nullable=False),
    ]
)

SEMANTIC_IDS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("codes", pa.list_(pa.field("element", pa.int32())), nullable=False),
        pa.field("sid", pa.string(), nullable=False),
        pa.field("tokenizer_version", pa.string(), nullable=False),
        pa.field("created_at", TS, nullable=False),
    ]
)

EVAL_METRICS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("tokenizer", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("k", pa.int32(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "items": ITEMS,
    "interactions": INTERACTIONS,
    "rejects": REJECTS,
    "item_features": ITEM_FEATURES,
    "sequences": SEQUENCES,
    "semantic_ids": SEMANTIC_IDS,
    "eval_metrics": EVAL_METRICS,
}


def schema_of(table: str) -> pa.Schema:
    """Schema of ``table``; ``<table>__<tag>`` (e.g. ``semantic_ids__rqvae``) shares its base's."""
    try:
        return TABLES[table.split("__", 1)[0]]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {sorted(TABLES)} (optionally with a __tag)") from None
