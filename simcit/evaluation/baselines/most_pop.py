"""MostPop: every user gets the items ranked by their interaction count in the training parts."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from simcit.evaluation.vocab import ItemVocab


@dataclass
class MostPopConfig:
    pass


def item_counts(vocab: ItemVocab, train_sequences: Sequence[Sequence[str]]) -> np.ndarray:
    """Interaction counts per item column (float64), training parts only."""
    encoded = vocab.encode_many(train_sequences)
    flat = np.concatenate(encoded) if encoded else np.empty(0, dtype=np.int64)
    return np.bincount(flat, minlength=len(vocab)).astype(np.float64)


def _with_config(model: Any, config: Any) -> Any:
    """Shallow copy of a fitted model with another config (fitted arrays are shared, read-only)."""
    out = copy.copy(model)
    out.config = config
    return out


class MostPop:
    def __init__(self, config: MostPopConfig | None = None):
        self.config = config or MostPopConfig()
        self.item_ids: list[str] = []
        self.counts = np.empty(0)

    def fit(self, train_sequences: Sequence[Sequence[str]], items: Sequence[str]) -> "MostPop":
        vocab = ItemVocab(items)
        self.item_ids = vocab.ids
        self.counts = item_counts(vocab, train_sequences)
        return self

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(histories), len(self.counts))).copy()
