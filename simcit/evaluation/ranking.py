"""The recommender contract and the full-ranking evaluation loop.

Every item is ranked for every user; nothing is excluded, not even the user's own history,
because repeat visits are legitimate targets (most POI check-ins are repeats).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd

from simcit.evaluation.metrics import (
    DEFAULT_KS,
    TieRule,
    mean_metrics,
    metrics_from_ranks,
    ranks_from_scores,
    ranks_from_topk,
)
from simcit.evaluation.sequences import Examples, examples


@runtime_checkable
class Recommender(Protocol):
    """A full-ranking model. ``item_ids`` fixes the column order of ``score``."""

    item_ids: list[str]

    def fit(self, train_sequences: Sequence[Sequence[str]], items: Sequence[str]) -> "Recommender":
        """Learn from training parts only (``sequences.training_sequences``)."""
        ...

    def score(self, histories: Sequence[Sequence[str]]) -> np.ndarray:
        """Scores ``[len(histories), len(item_ids)]``, higher is better; callers batch users."""
        ...


@runtime_checkable
class TopKRecommender(Protocol):
    """A model that only emits ranked lists (e.g. beam search over semantic IDs)."""

    def recommend(self, histories: Sequence[Sequence[str]], k: int) -> list[list[str]]:
        ...


@dataclass
class EvaluationResult:
    split: str
    metrics: dict[str, float]            # mean over users, e.g. {"recall@10": 0.59, ...}
    per_user: dict[str, np.ndarray]      # same keys, one value per user (for paired tests)
    ranks: np.ndarray                    # 1-based rank of each target, inf = not ranked
    user_ids: list[str]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def as_row(self, **extra) -> dict:
        return {**extra, "split": self.split, "users": self.n_users, **self.metrics}


def _as_examples(data: pd.DataFrame | Examples, split: str) -> Examples:
    return data if isinstance(data, Examples) else examples(data, split)


def evaluate(
    model: Recommender,
    sequences: pd.DataFrame | Examples,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
    ties: TieRule = "pessimistic",
    limit: Optional[int] = None,
) -> EvaluationResult:
    """Rank all items for each user of ``split`` in batches of ``batch_size`` users, so memory is
    bounded by ``batch_size x n_items`` scores whatever the number of users."""
    ex = _as_examples(sequences, split)
    if limit is not None:
        ex = ex.slice(0, limit)
    index = {item: i for i, item in enumerate(model.item_ids)}
    targets = np.fromiter((index.get(t, -1) for t in ex.targets), dtype=np.int64, count=len(ex))
    ranks = np.empty(len(ex), dtype=np.float64)
    for start in range(0, len(ex), batch_size):
        stop = min(start + batch_size, len(ex))
        scores = model.score(ex.histories[start:stop])
        if scores.shape != (stop - start, len(model.item_ids)):
            raise ValueError(f"score() returned {scores.shape}, expected {(stop - start, len(model.item_ids))}")
        ranks[start:stop] = ranks_from_scores(scores, targets[start:stop], ties=ties)
    per_user = metrics_from_ranks(ranks, ks)
    return EvaluationResult(split, mean_metrics(per_user), per_user, ranks, ex.user_ids)


def evaluate_topk(
    model: TopKRecommender,
    sequences: pd.DataFrame | Examples,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
    limit: Optional[int] = None,
) -> EvaluationResult:
    """Same protocol for list-emitting models; a target absent from the list is a miss, so the
    list must be at least ``max(ks)`` long for the metrics to mean what they say."""
    ex = _as_examples(sequences, split)
    if limit is not None:
        ex = ex.slice(0, limit)
    k = max(ks)
    ranks = np.empty(len(ex), dtype=np.float64)
    for start in range(0, len(ex), batch_size):
        stop = min(start + batch_size, len(ex))
        lists = model.recommend(ex.histories[start:stop], k)
        ranks[start:stop] = ranks_from_topk([list(r)[:k] for r in lists], np.asarray(ex.targets[start:stop], dtype=object))
    per_user = metrics_from_ranks(ranks, ks)
    return EvaluationResult(split, mean_metrics(per_user), per_user, ranks, ex.user_ids)
