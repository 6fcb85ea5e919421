import numpy as np
import pytest

from simcit.evaluation.baselines import MarkovRepeat, MarkovRepeatConfig, MostPop
from simcit.evaluation.metrics import topk_from_scores
from simcit.evaluation.ranking import Recommender, evaluate, evaluate_topk
from simcit.evaluation.sequences import leave_one_out, training_sequences


def _toy_frame(n_users=57, n_items=40, seed=0):
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        length = int(rng.integers(3, 12))
        users += [f"u{u}"] * length
        items += [f"i{j}" for j in rng.integers(0, n_items, size=length)]
    return leave_one_out(users, items), [f"i{j}" for j in range(n_items)]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_batched_equals_unbatched(split):
    frame, items = _toy_frame()
    model = MarkovRepeat(MarkovRepeatConfig(repeat_weight=0.5, gamma=0.8)).fit(training_sequences(frame), items)
    assert isinstance(model, Recommender)
    full = evaluate(model, frame, split, batch_size=10_000)
    for bs in (1, 7, 50):
        part = evaluate(model, frame, split, batch_size=bs)
        np.testing.assert_array_equal(part.ranks, full.ranks)
        assert part.metrics == full.metrics
        assert part.user_ids == full.user_ids
        for k, v in full.per_user.items():
            np.testing.assert_array_equal(part.per_user[k], v)
    assert full.n_users == 57


def test_history_items_are_not_excluded():
    # Users whose target is the item they just visited: a model scoring that item first must
    # get Recall@1 = 1, which would be impossible if history items were removed from ranking.
    frame = leave_one_out(["u"] * 4 + ["v"] * 4, ["a", "b", "c", "c", "b", "a", "a", "a"])
    model = MarkovRepeat(MarkovRepeatConfig(transition_weight=0.0, repeat_weight=1.0, gamma=0.1))
    model.fit(training_sequences(frame), ["a", "b", "c"])
    res = evaluate(model, frame, "test", ks=(1,))
    assert res.metrics["recall@1"] == 1.0


class _ListModel:
    """Top-K adapter over a scoring model, as a generative recommender would expose."""

    def __init__(self, inner):
        self.inner = inner

    def recommend(self, histories, k):
        top = topk_from_scores(self.inner.score(histories), k)
        return [[self.inner.item_ids[j] for j in row] for row in top]


def test_evaluate_topk_matches_full_ranking_without_ties():
    frame, items = _toy_frame(seed=1)
    model = MostPop().fit(training_sequences(frame), items)
    model.counts = model.counts + np.linspace(0, 0.5, len(items))  # distinct scores: no ties
    a = evaluate(model, frame, "test")
    b = evaluate_topk(_ListModel(model), frame, "test", batch_size=9)
    assert a.metrics == pytest.approx(b.metrics)
