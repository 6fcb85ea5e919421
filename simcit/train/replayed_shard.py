"""A worker's share of a small dataset, read from Ray Data once and replayed from memory.

Every epoch over a Ray Data shard starts a new streaming execution (a split coordinator round
trip, block fetches); for a table of a few MB, where an epoch computes for under a second, that
start-up was over half of each tokenizer epoch (Scientific, 4k items: ~1.7 s per epoch, 0.7 s of
it training). The first epoch streams the shard as usual and keeps its rows; later epochs
reshuffle those rows in memory. Only used where the driver already decided the table is small
enough to cache (``tokenizer.cache_mb``); a large table streams every epoch.
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import pyarrow as pa


class ReplayedShard:
    def __init__(self, shard, replay: bool) -> None:
        self.shard = shard
        self.replay = replay
        self._rows: Optional[pa.Table] = None

    def batches(self, batch_size: int, shuffle_buffer: int = 0, seed: Optional[int] = None) -> Iterator[pa.Table]:
        """Batches of ``batch_size`` rows; shuffled when ``shuffle_buffer`` > 0 (the stream's
        local buffer on the first pass, a full permutation seeded by ``seed`` on replays)."""
        if self._rows is not None:
            n = self._rows.num_rows
            order = np.random.default_rng(seed).permutation(n) if shuffle_buffer > 0 else np.arange(n)
            for start in range(0, n, batch_size):
                yield self._rows.take(pa.array(order[start:start + batch_size]))
            return
        kwargs = {"local_shuffle_buffer_size": shuffle_buffer, "local_shuffle_seed": seed} if shuffle_buffer > 0 else {}
        kept: list[pa.Table] = []
        for rows in self.shard.iter_batches(batch_size=batch_size, batch_format="pyarrow", **kwargs):
            if rows.num_rows:
                if self.replay:
                    kept.append(rows)
                yield rows
        if self.replay:  # only a complete pass is kept
            self._rows = pa.concat_tables(kept).combine_chunks() if kept else pa.table({})
