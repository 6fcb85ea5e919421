"""Item id <-> column index mapping shared by every recommender's score matrix."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


class ItemVocab:
    """Column ``i`` of a score matrix is ``ids[i]``; the order is the item list given to ``fit``."""

    def __init__(self, items: Iterable[str]):
        self.ids: list[str] = [str(i) for i in items]
        self.index: dict[str, int] = {item: i for i, item in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise ValueError("item list has duplicate ids")

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, items: Sequence[str]) -> np.ndarray:
        """Indices of known items, order kept; unknown ids are dropped (they carry no signal)."""
        get = self.index.get
        idx = [j for j in (get(str(i), -1) for i in items) if j >= 0]
        return np.asarray(idx, dtype=np.int64)

    def encode_targets(self, items: Sequence[str]) -> np.ndarray:
        """One index per target; -1 for an unknown id, which the metrics score as a miss."""
        get = self.index.get
        return np.fromiter((get(str(i), -1) for i in items), dtype=np.int64, count=len(items))

    def encode_many(self, sequences: Iterable[Sequence[str]]) -> list[np.ndarray]:
        return [self.encode(s) for s in sequences]
