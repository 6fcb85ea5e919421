"""A small lake for the recommender stages without Spark: ``interactions``, ``sequences`` (the
leave-one-out layout of the sequences stage) and ``semantic_ids`` whose items follow a learnable
pattern (each user walks a fixed cycle of items, one step per hour)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

from simcit.lake import Lake
from simcit.sids.disambiguation import append_disambiguation

T0 = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)


def write_sequence_lake(root, namespace: str = "nyc", n_items: int = 40, n_users: int = 90, seed: int = 0,
                        tokenizer_version: str = "0123456789abcdef") -> dict:
    rng = np.random.default_rng(seed)
    items = [f"poi{i:03d}" for i in range(n_items)]
    cycle = rng.permutation(n_items)
    codes = append_disambiguation(rng.integers(0, [6, 6], size=(n_items, 2)))
    lake = Lake(root, namespace)
    now = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
    lake.write_table("semantic_ids", pa.table({
        "item_id": items,
        "codes": [list(map(int, c)) for c in codes],
        "sid": ["".join(f"<{'abc'[level]}_{c}>" for level, c in enumerate(row)) for row in codes],
        "tokenizer_version": [tokenizer_version] * n_items,
        "created_at": [now] * n_items,
    }, schema=_schema("semantic_ids")))

    inter, seq = [], []
    for u in range(n_users):
        start, n = int(rng.integers(n_items)), int(rng.integers(4, 14))
        walk = [items[cycle[(start + t) % n_items]] for t in range(n)]
        ts = [T0 + dt.timedelta(hours=u + t) for t in range(n)]
        user = f"u{u:03d}"
        inter += [(user, it, t, s) for s, (it, t) in enumerate(zip(walk, ts))]
        for split, end in (("train", n - 3), ("valid", n - 2), ("test", n - 1)):
            seq.append((user, split, walk[:end], ts[:end], walk[end], ts[end]))
    lake.write_table("interactions", pa.table(
        {k: [r[i] for r in inter] for i, k in enumerate(["user_id", "item_id", "ts", "seq_no"])},
        schema=_schema("interactions")))
    lake.write_table("sequences", pa.table(
        {k: [r[i] for r in seq] for i, k in enumerate(["user_id", "split", "history", "history_ts", "target",
                                                       "target_ts"])},
        schema=_schema("sequences")))
    successor = {items[a]: items[b] for a, b in zip(cycle, np.roll(cycle, -1))}
    return {"items": items, "successor": successor, "lake": lake}


def _schema(table: str) -> pa.Schema:
    from simcit.schemas import schema_of

    return schema_of(table)
