"""Ranking metrics for one-target-per-user evaluation (leave-one-out), vectorised over users.

A rank is 1-based; ``np.inf`` means "not ranked" (target missing from a top-K list, or a target
the model cannot score). With a single relevant item, Recall@K is the hit rate and
NDCG@K = 1 / log2(rank + 1) when rank <= K (the ideal DCG is 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
TieRule = Literal["pessimistic", "stable"]


def ranks_from_scores(
    scores: np.ndarray, targets: np.ndarray, ties: TieRule = "pessimistic"
) -> np.ndarray:
    """1-based rank of each row's target column in a full score matrix ``[users, items]``.

    ``targets`` holds column indices; a negative index (target unknown to the model) gets rank inf.
    Ties: "pessimistic" puts every item that ties with the target ahead of it, so a model cannot
    gain from constant scores; "stable" breaks ties by column order, which equals the positions in
    ``topk_from_scores`` (a stable descending sort).
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} do not match")
    known = targets >= 0
    rows = np.arange(scores.shape[0])
    t = scores[rows, np.where(known, targets, 0)][:, None]
    # NaN scores never beat the target (comparisons with NaN are False).
    greater = (scores > t).sum(axis=1)
    if ties == "pessimistic":
        ahead = greater + (scores == t).sum(axis=1) - 1
    elif ties == "stable":
        cols = np.arange(scores.shape[1])[None, :]
        ahead = greater + ((scores == t) & (cols < targets[:, None])).sum(axis=1)
    else:
        raise ValueError(f"unknown tie rule {ties!r}")
    ranks = (ahead + 1).astype(np.float64)
    ranks[~known | np.isnan(t[:, 0])] = np.inf
    return ranks


def topk_from_scores(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k best items per row, best first, ties broken by column order."""
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    # argpartition first so the cost is O(items) per row, then a stable sort of the k survivors.
    # A tie straddling the partition boundary is resolved by column order via a lexsort key.
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    out = np.empty((scores.shape[0], k), dtype=np.int64)
    for i in range(scores.shape[0]):
        row = scores[i]
        # Everything strictly better than the k-th value is in; fill the rest with the lowest
        # column indices among the ties, which is what a stable full sort would pick.
        better = np.flatnonzero(row > kth[i, 0])
        tied = np.flatnonzero(row == kth[i, 0])[: k - better.size]
        cand = np.concatenate([better, tied])
        order = np.lexsort((cand, -row[cand]))
        out[i] = cand[order]
    return out


def ranks_from_topk(topk: np.ndarray | Sequence[Sequence[int]], targets: np.ndarray) -> np.ndarray:
    """1-based position of each target in its row of top-K lists (inf when absent).

    Works for item indices or item-id strings alike; a row may be shorter than K.
    """
    targets = np.asarray(targets)
    ranks = np.full(len(targets), np.inf)
    if isinstance(topk, np.ndarray) and topk.ndim == 2 and topk.dtype != object:
        hit = topk == targets[:, None]
        found = hit.any(axis=1)
        ranks[found] = hit[found].argmax(axis=1) + 1
        return ranks
    for i, row in enumerate(topk):
        for pos, item in enumerate(row):
            if item == targets[i]:
                ranks[i] = pos + 1
                break
    return ranks


def metrics_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """Per-user ``recall@K`` and ``ndcg@K`` arrays (float64) for every K."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    # inf ranks give gain 1/log2(inf) = 0 and fail every rank <= K test.
    with np.errstate(divide="ignore"):
        gain = 1.0 / np.log2(ranks + 1.0)
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, gain, 0.0)
    return out


def mean_metrics(per_user: dict[str, np.ndarray]) -> dict[str, float]:
    return {name: float(np.mean(v)) if len(v) else float("nan") for name, v in per_user.items()}


def standard_error(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float("nan")
    return float(values.std(ddof=1) / np.sqrt(values.size))


@dataclass(frozen=True)
class PairedComparison:
    """Model A vs model B on the same users: means, their standard errors, and the paired
    difference (A - B) whose standard error is what decides whether a gap is real."""

    n: int
    mean_a: float
    se_a: float
    mean_b: float
    se_b: float
    diff: float
    se_diff: float

    @property
    def z(self) -> float:
        return self.diff / self.se_diff if self.se_diff > 0 else float("nan")


def paired_comparison(a: np.ndarray, b: np.ndarray) -> PairedComparison:
    """Compare two per-user metric arrays aligned on the same users."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arrays must be 1-D and aligned, got {a.shape} and {b.shape}")
    d = a - b
    return PairedComparison(
        n=int(a.size),
        mean_a=float(a.mean()),
        se_a=standard_error(a),
        mean_b=float(b.mean()),
        se_b=standard_error(b),
        diff=float(d.mean()),
        se_diff=standard_error(d),
    )
