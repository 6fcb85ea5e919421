"""ItemKNN: items are similar when they occur close together in training sequences.

C[a, b] counts ordered position pairs (p, q), p != q, |p - q| <= window, of one training
sequence holding a at p and b at q (a == b included: repeats are a signal for POIs).
sim(a, b) = C[a, b] / (sqrt(n_a * n_b) + shrink), n = training occurrence counts: the cosine of
the items' occurrence-context vectors, optionally shrunk for rare items.
score_u(j) = sum over the last ``last_n`` history items h (age 0 = most recent) of
decay**age * sim(h, j), + history_weight * R_u(j), plus a tiny popularity tie-break.
R_u is the user's own history, weighted decay**age and summing to 1 (as in MarkovRepeat).
Items that co-occur with the history include the history itself, so on data without repeats
(Amazon) a negative history_weight learned on valid recovers the classic "exclude seen items"
rule without the evaluation excluding anything; on POIs a positive one rewards revisits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp

from simcit.evaluation.baselines.most_pop import _with_config, item_counts
from simcit.evaluation.baselines.recency import recency_matrix
from simcit.evaluation.vocab import ItemVocab


@dataclass
class ItemKNNConfig:
    window: int = 3                  # max position distance of a co-occurring pair
    last_n: int = 5                  # history items that vote
    decay: float = 0.8               # vote weight per position back
    shrink: float = 0.0
    history_weight: float = 0.0      # weight of the user's own (recency-weighted) history
    max_neighbors: Optional[int] = None  # keep each item's top neighbours (bounds memory at scale)
    popularity_tiebreak: float = 1e-9

    def __post_init__(self) -> None:
        if self.window < 1 or self.last_n < 1:
            raise ValueError("window and last_n must be >= 1")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError("decay must be in (0, 1]")


def cooccurrence(encoded: Sequence[np.ndarray], n_items: int, window: int) -> sp.csr_matrix:
    """Symmetric ordered-pair counts within ``window`` positions (see module docstring)."""
    src, dst = [], []
    for d in range(1, window + 1):
        for s in encoded:
            if len(s) > d:
                src.append(s[:-d])
                dst.append(s[d:])
    if not src:
        return sp.csr_matrix((n_items, n_items))
    a, b = np.concatenate(src), np.concatenate(dst)
    # Both directions: the pair (p, q) and the pair (q, p).
    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
    return sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n_items, n_items)).tocsr()


def cosine_similarity(c: sp.csr_matrix, counts: np.ndarray, shrink: float = 0.0) -> sp.csr_matrix:
    norm = np.sqrt(counts)
    c = c.tocoo()
    vals = c.data / (norm[c.row] * norm[c.col] + shrink)
    return sp.csr_matrix((vals, (c.row, c.col)), shape=c.shape)


def keep_top_neighbors(s: sp.csr_matrix, k: int) -> sp.csr_matrix:
    s = s.tocsr()
    rows, cols, vals = [], [], []
    for i in range(s.shape[0]):
        lo, hi = s.indptr[i], s.indptr[i + 1]
        if hi - lo > k:
            sel = np.argpartition(-s.data[lo:hi], k - 1)[:k] + lo
        else:
            sel = np.arange(lo, hi)
        rows.append(np.full(sel.size, i))
        cols.append(s.indices[sel])
        vals.append(s.data[sel])
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=s.shape
    )


class ItemKNN:
    # Config fields that change what fit() computes; the others only matter at score time.
    fit_fields = ("window", "shrink", "max_neighbors")

    def __init__(self, config: ItemKNNConfig | None = None):
        self.config = config or ItemKNNConfig()
        self.item_ids: list[str] = []

    def fit(self, train_sequences: Sequence[Sequence[str]], items: Sequence[str]) -> "ItemKNN":
        c = self.config
        self.vocab = ItemVocab(items)
        self.item_ids = self.vocab.ids
        encoded = self.vocab.encode_many(train_sequences)
        counts = item_counts(self.vocab, train_sequences)
        sim = cosine_similarity(cooccurrence(encoded, len(self.vocab), c.window), counts, c.shrink)
        if c.max_neighbors is not None:
            sim = keep_top_neighbors(sim, c.max_neighbors)
        self.similarity = sim.tocsr()
        self.popularity = counts / max(counts.max(), 1.0)
        return self

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        c = self.config
        encoded = self.vocab.encode_many(histories)
        votes = recency_matrix(encoded, len(self.vocab), c.decay, last_n=c.last_n)
        scores = (votes @ self.similarity).toarray()
        if c.history_weight != 0:
            own = recency_matrix(encoded, len(self.vocab), c.decay, normalize=True)
            scores += c.history_weight * own.toarray()
        scores += c.popularity_tiebreak * self.popularity
        return scores

    def with_config(self, config: ItemKNNConfig) -> "ItemKNN":
        """Shallow copy sharing the fitted similarity; ``config`` may differ in score-time fields."""
        return _with_config(self, config)
