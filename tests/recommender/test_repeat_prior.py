import numpy as np
import pytest
import torch

from simcit.recommender import SequenceConfig, SIDVocabulary, collate_prompts, encode_prompt
from simcit.recommender.generative import GenerativeRecommender
from simcit.recommender.repeat_prior import (
    Candidates,
    RepeatPrior,
    history_probabilities,
    rank,
    recent_distinct,
    tune,
)
from simcit.recommender.sid_scoring import score_sids
from tests.recommender.recommender_testing import brute_force_scores, random_sids, tiny_model


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(1)
    ids = [f"i{k}" for k in range(40)]
    vocab = SIDVocabulary(random_sids(rng, 40, (4, 3, 3)), item_ids=ids)
    cfg = SequenceConfig(max_items=6)
    return vocab, tiny_model(vocab), cfg


def test_score_sids_equals_one_forward_per_candidate(setup):
    vocab, model, cfg = setup
    table = vocab.item_token_table
    prompts = [encode_prompt(h, vocab, cfg) for h in ([1, 2, 3, 4], [5], [6, 7])]  # unequal lengths: padding
    batch = collate_prompts(prompts, vocab.pad_id)
    cands = torch.tensor([[0, 9, 17, 39], [3, 3, 8, 1], [22, 5, 0, 11]])
    got = score_sids(model, batch["input_ids"], batch["attention_mask"], table[cands])
    for u, prompt in enumerate(prompts):
        expected = brute_force_scores(model, prompt.unsqueeze(0), table[cands[u]])
        torch.testing.assert_close(got[u], expected, atol=1e-4, rtol=1e-4)


def test_history_probabilities_and_recent_distinct():
    history = np.array([5, 7, 5, 9])  # oldest first
    assert recent_distinct(history, 10).tolist() == [9, 5, 7]
    assert recent_distinct(history, 2).tolist() == [9, 5]
    p = history_probabilities(history, np.array([5, 7, 9, 3, -1]), decay=0.5)
    # weights by age: 9 -> 1, 5 -> 0.5 + 0.125, 7 -> 0.25; total 1.875
    np.testing.assert_allclose(p, [0.625 / 1.875, 0.25 / 1.875, 1 / 1.875, 0, 0])
    flat = history_probabilities(history, np.array([5, 7, 9]), decay=1.0)
    np.testing.assert_allclose(flat, [0.5, 0.25, 0.25])


def _cands():
    # One user; beam found items 1, 2, 3; the history holds 3 (also in the beam) and 8 (not).
    return Candidates(
        beam_items=np.array([[1, 2, 3]]), beam_logp=np.log(np.array([[0.5, 0.3, 0.1]])),
        history_items=np.array([[8, 3]]), history_logp=np.log(np.array([[0.01, 0.1]])),
        histories=[np.array([3, 8])])


def test_rank_without_prior_is_the_model_order_and_mixture_moves_history_up():
    c = _cands()
    assert rank(c, RepeatPrior(0.0), 4).tolist() == [[1, 2, 3, 8]]
    # w = 0.5, decay 1: p_hist = 0.5 each; 8: 0.5*0.01 + 0.25 = 0.255, 3: 0.05 + 0.25 = 0.3,
    # 1: 0.25, 2: 0.15 -> 3, 8, 1, 2 (item 3 is scored once, not twice).
    assert rank(c, RepeatPrior(0.5, 1.0), 5).tolist() == [[3, 8, 1, 2, -1]]


def test_suppress_puts_seen_items_last():
    assert rank(_cands(), RepeatPrior(suppress=True), 4).tolist() == [[1, 2, 3, 8]]
    c = _cands()
    c.beam_logp = np.log(np.array([[0.1, 0.3, 0.5]]))  # item 3 best by the model, but seen
    assert rank(c, RepeatPrior(suppress=True), 4).tolist() == [[2, 1, 3, 8]]


def test_tune_picks_the_prior_that_wins_on_validation():
    c = _cands()
    tuned = tune(c, np.array([8]), metric_at=1)  # only a prior can put the seen item 8 first
    assert tuned.plain == 0.0 and tuned.metric == 1.0 and tuned.prior.weight > 0
    assert tune(c, np.array([1]), metric_at=1).prior == RepeatPrior(0.0)  # ties keep the plain model
    with pytest.raises(ValueError):
        RepeatPrior(1.0)


def test_candidates_agree_with_beam_search_and_exact_scores(setup):
    vocab, model, cfg = setup
    rec = GenerativeRecommender(model, vocab, cfg, beam_size=40, batch_users=2)
    histories = [["i1", "i2", "i1"], ["i4", "nope"], ["i5", "i6", "i7"]]
    c = rec.candidates(histories, k=5, history_items=2)
    assert c.beam_items.shape == (3, 5) and c.history_items.shape == (3, 2)
    assert c.history_items[0].tolist() == [1, 2] and c.history_items[1].tolist() == [4, -1]
    assert np.isneginf(c.history_logp[1, 1])
    # The plain ranking is the beam's; an item found by both has the same score both ways.
    np.testing.assert_array_equal(rank(c, RepeatPrior(0.0), 5), c.beam_items)
    assert (rec.recommend_indices(histories, 5) == c.beam_items).all()
    for u in range(3):
        for j, item in enumerate(c.history_items[u]):
            hit = np.flatnonzero(c.beam_items[u] == item)
            if item >= 0 and len(hit):
                assert abs(c.beam_logp[u, hit[0]] - c.history_logp[u, j]) < 1e-4
