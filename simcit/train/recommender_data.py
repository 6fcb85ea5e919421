"""Lake-side inputs of the recommender stages: the SID vocabulary of a ``semantic_ids`` table
version and the leave-one-out rows of ``sequences``, read in Arrow batches.

The vocabulary is the one thing read whole: it *is* the model's output space (the decoder's trie
holds every item's SID), ~60 bytes per item plus its id (6M items: ~0.5 GB). Sequences are
streamed per batch (evaluation) or through Ray Data (training).
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from simcit.recommender import SIDVocabulary
from simcit.recommender.time_context import TIME_TOKENS
from simcit.train.model_store import CONFIG_FILE, tokenizer_models_root

SEQUENCE_COLUMNS = ["user_id", "history", "target", "history_ts", "target_ts"]


def tokenizer_meta(lake, tokenizer_version: str) -> Optional[dict]:
    """config.json of the tokenizer model directory with this version (kind, L, K), if present."""
    for path in glob.glob(os.path.join(tokenizer_models_root(lake), f"*-{tokenizer_version}", CONFIG_FILE)):
        with open(path) as fh:
            return json.load(fh)
    return None


def sid_vocabulary(lake, table: str, context: str = "none", version: Optional[int] = None) -> SIDVocabulary:
    """Vocabulary of ``table`` (at ``version``, default latest): item order = table order.

    Level sizes are the tokenizer's K for its L levels (from its model directory) and the largest
    disambiguation code + 1 for the last level, so the token layout depends on the tokenizer and
    the table's collisions, not on which codes happen to be used.
    """
    if not lake.exists(table):
        raise FileNotFoundError(f"table {table} does not exist in {lake.root}/{lake.namespace}: "
                                f"run `simcit assign-ids` first")
    version = lake.version(table) if version is None else version
    data = lake.dataset(table, version).to_table(columns=["item_id", "codes", "tokenizer_version"])
    if data.num_rows == 0:
        raise ValueError(f"{table} v{version} is empty")
    versions = pc.unique(data["tokenizer_version"]).to_pylist()
    if len(versions) != 1:
        raise ValueError(f"{table} v{version} mixes tokenizer versions {versions}; re-run assign-ids")
    lengths = pc.unique(pc.list_value_length(data["codes"])).to_pylist()
    if len(lengths) != 1:
        raise ValueError(f"{table} v{version}: SIDs of different lengths {sorted(lengths)}")
    codes = data["codes"].combine_chunks().flatten().to_numpy().astype(np.int64).reshape(data.num_rows, lengths[0])
    sizes = [int(x) for x in codes.max(axis=0) + 1]
    meta = tokenizer_meta(lake, versions[0])
    if meta is not None and int(meta["levels"]) == len(sizes) - 1:
        sizes[:-1] = [max(int(meta["codebook_size"]), s) for s in sizes[:-1]]
    return SIDVocabulary(codes, codebook_sizes=sizes, item_ids=data["item_id"].to_pylist(),
                         tokenizer_version=versions[0], table_version=version,
                         context_tokens=TIME_TOKENS if context == "time" else ())


def _split_filter(split: str) -> ds.Expression:
    return ds.field("split") == split


def iter_sequence_batches(lake, split: str, batch_rows: int = 4096, limit: Optional[int] = None,
                          version: Optional[int] = None) -> Iterator[pa.RecordBatch]:
    """Rows of one split of ``sequences`` in Arrow batches (at most ``limit`` rows)."""
    left = limit
    dataset = lake.dataset("sequences", version)
    for batch in dataset.to_batches(columns=SEQUENCE_COLUMNS, filter=_split_filter(split), batch_size=batch_rows):
        if left is not None:
            if left <= 0:
                return
            batch = batch.slice(0, left)
            left -= batch.num_rows
        if batch.num_rows:
            yield batch


@dataclass
class SplitRows:
    """Plain-Python rows of a split (small: e.g. the validation users of early stopping)."""

    user_ids: list[str]
    histories: list[list[str]]
    targets: list[str]
    history_ts: list[list]
    target_ts: list

    def __len__(self) -> int:
        return len(self.targets)

    @classmethod
    def from_batch(cls, batch: pa.RecordBatch | pa.Table) -> "SplitRows":
        d = batch.to_pydict()
        return cls(d["user_id"], d["history"], d["target"], d["history_ts"], d["target_ts"])

    def part(self, rank: int, world: int) -> "SplitRows":
        """Every ``world``-th row from ``rank``: a worker's share."""
        return SplitRows(self.user_ids[rank::world], self.histories[rank::world], self.targets[rank::world],
                         self.history_ts[rank::world], self.target_ts[rank::world])


def read_split(lake, split: str, limit: Optional[int] = None) -> SplitRows:
    batches = list(iter_sequence_batches(lake, split, limit=limit))
    if not batches:
        return SplitRows([], [], [], [], [])
    return SplitRows.from_batch(pa.Table.from_batches(batches))
