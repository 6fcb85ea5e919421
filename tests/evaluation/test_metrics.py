import math

import numpy as np
import pytest

from simcit.evaluation.metrics import (
    mean_metrics,
    metrics_from_ranks,
    paired_comparison,
    ranks_from_scores,
    ranks_from_topk,
    topk_from_scores,
)


def test_metrics_hand_computed():
    ranks = np.array([1, 2, 3, 11, np.inf])
    m = metrics_from_ranks(ranks, ks=(1, 5, 10))
    np.testing.assert_array_equal(m["recall@1"], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(m["recall@5"], [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(m["recall@10"], [1, 1, 1, 0, 0])
    np.testing.assert_allclose(m["ndcg@5"], [1.0, 1 / math.log2(3), 0.5, 0.0, 0.0])
    np.testing.assert_allclose(m["ndcg@1"], [1, 0, 0, 0, 0])
    means = mean_metrics(m)
    assert means["recall@5"] == pytest.approx(0.6)
    assert means["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 0.5) / 5)


def test_ranks_from_scores_and_ties():
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.3],  # target 2 -> rank 2
            [0.5, 0.5, 0.5, 0.1],  # target 1 ties with 0 and 2
            [0.0, 0.0, 0.0, 0.0],  # constant scores, target 0
            [0.2, 0.1, 0.0, 0.3],  # unknown target
        ]
    )
    targets = np.array([2, 1, 0, -1])
    pess = ranks_from_scores(scores, targets, ties="pessimistic")
    np.testing.assert_array_equal(pess, [2, 3, 4, np.inf])
    stable = ranks_from_scores(scores, targets, ties="stable")
    np.testing.assert_array_equal(stable, [2, 2, 1, np.inf])


def test_topk_from_scores_is_a_stable_descending_sort():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 30)).astype(float)  # many ties
    top = topk_from_scores(scores, 7)
    ref = np.argsort(-scores, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(top, ref)
    # Positions in the top-K list agree with the "stable" full-ranking rule.
    targets = rng.integers(0, 30, size=20)
    r_top = ranks_from_topk(top, targets)
    r_full = ranks_from_scores(scores, targets, ties="stable")
    np.testing.assert_array_equal(r_top, np.where(r_full <= 7, r_full, np.inf))


def test_ranks_from_topk_with_string_lists():
    lists = [["a", "b", "c"], ["c"], []]
    np.testing.assert_array_equal(ranks_from_topk(lists, np.array(["b", "a", "a"], dtype=object)), [2, np.inf, np.inf])


def test_paired_comparison_hand_computed():
    a = np.array([1.0, 0.0, 1.0, 1.0])
    b = np.array([0.0, 0.0, 1.0, 0.0])
    pc = paired_comparison(a, b)
    assert pc.n == 4
    assert pc.mean_a == pytest.approx(0.75)
    assert pc.mean_b == pytest.approx(0.25)
    assert pc.diff == pytest.approx(0.5)
    # d = [1, 0, 0, 1]: sample std = sqrt(1/3), se = sqrt(1/3) / 2
    assert pc.se_diff == pytest.approx(math.sqrt(1 / 3) / 2)
    assert pc.se_a == pytest.approx(np.std(a, ddof=1) / 2)
    assert pc.z == pytest.approx(0.5 / (math.sqrt(1 / 3) / 2))
    with pytest.raises(ValueError):
        paired_comparison(a, b[:3])
