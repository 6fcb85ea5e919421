"""A copy prior over the user's own history, mixed into the generative model's item distribution.

Why: on check-in data most next items are repeats (NYC: 70% of test targets are in the user's
history). A small SID language model learns "copy an item from the prompt" slowly, while a
recency-weighted count of the user's own items is a strong, free estimate of exactly that. The
pointer-generator / RepeatNet answer is a mixture, applied here at decoding time:

    p(item) = (1 - w) * p_LM(item | history) + w * p_hist(item),
    p_hist(item) ∝ sum over the item's occurrences in the history of decay ** age

(age 0 = the latest interaction). ``w`` and ``decay`` are tuned on validation users like every
floor's hyper-parameters (``tune``); ``w = 0`` is the plain model. Catalogues where nothing
repeats (Amazon reviews) instead want seen items pushed down: the ``suppress`` prior ranks the
user's history items after every unseen one.

Candidates are the beam search's top-K (scored by the LM) plus the user's most recent distinct
history items, whose LM probability is computed exactly (``sid_scoring.score_sids``), so the
mixture is exact on every candidate; items that are neither keep their (lower) LM-only score and
cannot enter the top-K.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Tuning grid (validation Recall@10). ``w`` in probability space: 0 is the plain LM.
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DECAYS = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)


@dataclass(frozen=True)
class RepeatPrior:
    weight: float = 0.0  # mixture weight of the history distribution, in [0, 1)
    decay: float = 0.9  # per-step recency decay of the history distribution, in (0, 1]
    suppress: bool = False  # rank history items below every unseen item instead of mixing

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight < 1.0:
            raise ValueError(f"weight must be in [0, 1), got {self.weight}")
        if not 0.0 < self.decay <= 1.0:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")

    def describe(self) -> str:
        return "suppress seen items" if self.suppress else f"weight {self.weight:g}, decay {self.decay:g}"


@dataclass
class Candidates:
    """A batch of users' candidate items with their LM log-probabilities."""

    beam_items: np.ndarray  # [users, K] item rows from beam search, -1 padding
    beam_logp: np.ndarray  # [users, K] LM log p of each (-inf padding)
    history_items: np.ndarray  # [users, C] distinct history items, most recent first, -1 padding
    history_logp: np.ndarray  # [users, C] exact LM log p of each (-inf padding)
    histories: list[np.ndarray]  # each user's full history as item rows (unknown items dropped)

    def __len__(self) -> int:
        return len(self.histories)

    def take(self, start: int, stop: int) -> "Candidates":
        """Users ``start:stop`` of this batch."""
        s = slice(start, stop)
        return Candidates(self.beam_items[s], self.beam_logp[s], self.history_items[s], self.history_logp[s],
                          self.histories[s])

    @staticmethod
    def concat(parts: Sequence["Candidates"]) -> "Candidates":
        width = lambda name: max(getattr(p, name).shape[1] for p in parts)  # noqa: E731

        def stack(name: str, fill: float) -> np.ndarray:
            w = width(name)
            return np.concatenate([np.pad(getattr(p, name), ((0, 0), (0, w - getattr(p, name).shape[1])),
                                          constant_values=fill) for p in parts])

        return Candidates(stack("beam_items", -1), stack("beam_logp", -np.inf), stack("history_items", -1),
                          stack("history_logp", -np.inf), [h for p in parts for h in p.histories])


def recent_distinct(history: np.ndarray, limit: int) -> np.ndarray:
    """The ``limit`` most recently seen distinct items of ``history`` (given oldest first), latest first."""
    rev = history[::-1]
    _, first = np.unique(rev, return_index=True)
    return rev[np.sort(first)][:limit]


def history_probabilities(history: np.ndarray, items: np.ndarray, decay: float) -> np.ndarray:
    """p_hist of each of ``items`` (-1 -> 0) under recency decay ``decay``."""
    if len(history) == 0:
        return np.zeros(len(items))
    weights = decay ** np.arange(len(history) - 1, -1, -1, dtype=np.float64)
    uniq, inverse = np.unique(history, return_inverse=True)
    mass = np.bincount(inverse, weights=weights) / weights.sum()
    pos = np.searchsorted(uniq, items).clip(max=len(uniq) - 1)
    return np.where((items >= 0) & (uniq[pos] == items), mass[pos], 0.0)


def rank(cands: Candidates, prior: RepeatPrior, k: int) -> np.ndarray:
    """``[users, k]`` item rows under ``prior`` (-1 padding), best first."""
    users = len(cands)
    hist_items, hist_logp = cands.history_items, cands.history_logp
    # A beam item that is also a history candidate is scored once, on the history side.
    dup = (cands.beam_items[:, :, None] == hist_items[:, None, :]).any(-1) & (cands.beam_items >= 0)
    beam_logp = np.where(dup | (cands.beam_items < 0), -np.inf, cands.beam_logp)
    if prior.suppress:
        # Seen items after every unseen one, each group in LM order.
        hist_score = np.where(hist_items >= 0, hist_logp - 1e6, -np.inf)
        scores = np.concatenate([beam_logp, hist_score], 1)
    else:
        w = prior.weight
        p_hist = np.zeros(hist_items.shape)
        if w > 0:
            for u in range(users):
                p_hist[u] = history_probabilities(cands.histories[u], hist_items[u], prior.decay)
        with np.errstate(divide="ignore"):
            mixed = np.log((1 - w) * np.exp(hist_logp) + w * p_hist)
            scores = np.concatenate([np.log1p(-w) + beam_logp, np.where(hist_items >= 0, mixed, -np.inf)], 1)
    items = np.concatenate([cands.beam_items, hist_items], 1)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(items, order, 1)
    top_scores = np.take_along_axis(scores, order, 1)
    top[~np.isfinite(top_scores)] = -1
    if top.shape[1] < k:
        top = np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=-1)
    return top


@dataclass
class TunedPrior:
    prior: RepeatPrior
    metric: float  # validation metric of the chosen prior
    plain: float  # the same metric with no prior (w = 0)
    table: list[tuple[RepeatPrior, float]]  # every grid point


def tune(cands: Candidates, targets: np.ndarray, metric_at: int = 10,
         weights: Sequence[float] = WEIGHTS, decays: Sequence[float] = DECAYS) -> TunedPrior:
    """Grid search of the prior on validation users (``targets``: item rows, -1 unknown) by
    Recall@``metric_at``; ties go to the simpler prior (no prior, then smaller weights)."""
    def recall(prior: RepeatPrior) -> float:
        top = rank(cands, prior, metric_at)
        return float(((top == targets[:, None]) & (targets[:, None] >= 0)).any(1).mean()) if len(targets) else 0.0

    grid = [RepeatPrior(0.0)] + [RepeatPrior(w, d) for w, d in itertools.product(weights, decays) if w > 0]
    grid.append(RepeatPrior(suppress=True))
    table = [(p, recall(p)) for p in grid]
    best = max(table, key=lambda t: t[1])  # max() keeps the first of equal values
    return TunedPrior(prior=best[0], metric=best[1], plain=table[0][1], table=table)
