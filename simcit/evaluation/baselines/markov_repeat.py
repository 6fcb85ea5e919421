"""Markov-1 + personal repeat: where do people go after the user's last item, plus where has
this user been lately.

score(j) = a * P(j | last item) + w * R_u(j) + eps * popularity(j), with
P from first-order transition counts in the training parts (row-normalised), and R_u the user's
recency-weighted history (weight gamma**age, rows summing to 1). The tiny popularity term only
breaks ties (e.g. for a last item never seen in training). w and gamma are tuned on valid;
w may be negative: on data without repeats (Amazon) the tuner then learns to push seen items down.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from simcit.evaluation.baselines.most_pop import _with_config, item_counts
from simcit.evaluation.baselines.recency import recency_matrix
from simcit.evaluation.vocab import ItemVocab


@dataclass
class MarkovRepeatConfig:
    transition_weight: float = 1.0   # a; 0 gives the "own history only" baseline
    repeat_weight: float = 1.0       # w
    gamma: float = 0.9               # recency decay per position back
    popularity_tiebreak: float = 1e-9

    def __post_init__(self) -> None:
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError("gamma must be in (0, 1]")
        if self.transition_weight < 0:
            raise ValueError("transition_weight must be >= 0")


def transition_matrix(encoded: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Row-normalised counts of consecutive pairs (a -> b) inside each training sequence."""
    src = [s[:-1] for s in encoded if len(s) > 1]
    dst = [s[1:] for s in encoded if len(s) > 1]
    if not src:
        return sp.csr_matrix((n_items, n_items))
    a, b = np.concatenate(src), np.concatenate(dst)
    counts = sp.coo_matrix((np.ones(a.size), (a, b)), shape=(n_items, n_items)).tocsr()
    out_deg = np.asarray(counts.sum(axis=1)).ravel()
    inv = np.divide(1.0, out_deg, out=np.zeros_like(out_deg), where=out_deg > 0)
    return sp.diags(inv) @ counts


class MarkovRepeat:
    fit_fields: tuple[str, ...] = ()  # fit() uses no config field: every grid point shares it

    def __init__(self, config: MarkovRepeatConfig | None = None):
        self.config = config or MarkovRepeatConfig()
        self.item_ids: list[str] = []

    def fit(self, train_sequences: Sequence[Sequence[str]], items: Sequence[str]) -> "MarkovRepeat":
        self.vocab = ItemVocab(items)
        self.item_ids = self.vocab.ids
        encoded = self.vocab.encode_many(train_sequences)
        self.transitions = transition_matrix(encoded, len(self.vocab)).tocsr()
        counts = item_counts(self.vocab, train_sequences)
        self.popularity = counts / max(counts.max(), 1.0)
        return self

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        c = self.config
        encoded = self.vocab.encode_many(histories)
        n = len(self.vocab)
        scores = np.tile(c.popularity_tiebreak * self.popularity, (len(encoded), 1))
        if c.transition_weight > 0:
            has_last = np.array([len(h) > 0 for h in encoded], dtype=bool)
            last = np.array([h[-1] for h in encoded if len(h) > 0], dtype=np.int64)
            if last.size:
                scores[has_last] += c.transition_weight * self.transitions[last].toarray()
        if c.repeat_weight != 0:
            rec = recency_matrix(encoded, n, c.gamma, normalize=True)
            scores += c.repeat_weight * rec.toarray()
        return scores

    def with_config(self, config: MarkovRepeatConfig) -> "MarkovRepeat":
        return _with_config(self, config)
