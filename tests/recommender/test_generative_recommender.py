import numpy as np
import pytest
import torch

from simcit.recommender import SequenceConfig, SIDVocabulary, encode_prompt
from simcit.recommender.generative import GenerativeRecommender
from simcit.recommender.time_context import TIME_TOKENS, hour_of_week_buckets, time_tokens
from tests.recommender.recommender_testing import brute_force_scores, random_sids, tiny_model


def test_hour_of_week_buckets():
    ts = np.array(["1970-01-01T00:00", "2026-11-30T07:10", "2026-12-06T23:59", "2026-12-07T00:00"],
                  dtype="datetime64[us]")
    assert hour_of_week_buckets(ts).tolist() == [3 * 8, 2, 55, 0]  # Thu 00h, Mon 06-09h, Sun 21-24h, Mon 00h
    assert time_tokens(ts[:1]) == [["<how_24>"]]
    assert len(set(TIME_TOKENS)) == 56


def _recommender(context="none", n_items=30):
    rng = np.random.default_rng(0)
    ids = [f"i{k}" for k in range(n_items)]
    vocab = SIDVocabulary(random_sids(rng, n_items, (4, 3)), item_ids=ids,
                          context_tokens=TIME_TOKENS if context == "time" else ())
    cfg = SequenceConfig(max_items=5, use_context=context == "time")
    model = tiny_model(vocab)
    return GenerativeRecommender(model, vocab, cfg, beam_size=64, batch_users=2, context=context), vocab, model, cfg


def test_recommend_matches_brute_force_ranking_and_maps_ids():
    rec, vocab, model, cfg = _recommender()
    histories = [["i1", "i2", "i3"], ["i4"], ["i5", "unknown", "i6"]]
    lists = rec.recommend(histories, k=5)
    assert rec.unknown_items == 1  # skipped, counted
    for history, got in zip(histories, lists):
        known = [vocab.item_ids.index(h) for h in history if h in vocab.item_ids]
        prompt = encode_prompt(known, vocab, cfg).unsqueeze(0)
        scores = brute_force_scores(model, prompt, vocab.item_token_table)
        expected = [vocab.item_ids[i] for i in torch.argsort(scores, descending=True)[:5].tolist()]
        assert got == expected


def test_time_context_needs_timestamps_and_changes_the_prompt():
    rec, vocab, _, _ = _recommender("time")
    ts = [np.array(["2026-11-30T07:00", "2026-11-30T09:00"], dtype="datetime64[us]")]
    with pytest.raises(ValueError, match="timestamps"):
        rec.recommend([["i1", "i2"]], 3)
    prompt = rec._prompt(["i1", "i2"], ts[0], np.datetime64("2026-11-30T20:00"))
    tokens = [vocab.token(int(t)) for t in prompt]
    assert tokens[1] == "<how_2>" and tokens[-1] == "<how_6>"  # before each SID, then the request's
    assert len(rec.recommend([["i1", "i2"]], 3, ts, [np.datetime64("2026-11-30T20:00")])[0]) == 3
