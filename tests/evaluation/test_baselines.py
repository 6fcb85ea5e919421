import numpy as np
import pytest

from simcit.evaluation.baselines import ItemKNN, ItemKNNConfig, MarkovRepeat, MarkovRepeatConfig, MostPop
from simcit.evaluation.baselines.item_knn import cooccurrence
from simcit.evaluation.baselines.markov_repeat import transition_matrix
from simcit.evaluation.baselines.recency import recency_matrix
from simcit.evaluation.ranking import evaluate
from simcit.evaluation.sequences import leave_one_out, training_sequences
from simcit.evaluation.tuning import grid_search
from simcit.evaluation.vocab import ItemVocab

ITEMS = ["a", "b", "c", "d", "e"]


def test_most_pop_ranks_by_training_count():
    train = [["a", "b", "b"], ["b", "c", "c"], ["c", "b", "e"]]  # b:4, c:3, a:1, e:1, d:0
    model = MostPop().fit(train, ITEMS)
    scores = model.score([["a"], []])
    assert scores.shape == (2, 5)
    np.testing.assert_array_equal(scores[0], [1, 4, 3, 0, 1])
    np.testing.assert_array_equal(scores[0], scores[1])  # not personalised
    assert [ITEMS[j] for j in np.argsort(-scores[0], kind="stable")[:2]] == ["b", "c"]


def test_transition_matrix_is_row_normalised_counts():
    vocab = ItemVocab(ITEMS)
    t = transition_matrix(vocab.encode_many([["a", "b", "a", "c"], ["a", "b"]]), 5).toarray()
    # a -> b twice, a -> c once; b -> a once.
    np.testing.assert_allclose(t[0], [0, 2 / 3, 1 / 3, 0, 0])
    np.testing.assert_allclose(t[1], [1, 0, 0, 0, 0])
    assert t[2].sum() == 0


def test_markov_ranks_known_successor_first():
    # Pattern: after "a" comes "b" (3 times) far more than "c" (once).
    train = [["a", "b", "d"], ["e", "a", "b"], ["a", "b", "a", "c"], ["d", "e"]]
    model = MarkovRepeat(MarkovRepeatConfig(repeat_weight=0.0)).fit(train, ITEMS)
    s = model.score([["d", "e", "a"], ["c", "d"]])
    assert ITEMS[int(np.argmax(s[0]))] == "b"
    assert ITEMS[int(np.argsort(-s[0])[1])] == "c"
    assert ITEMS[int(np.argmax(s[1]))] == "e"  # d -> e is the only successor of d


def test_repeat_bonus_prefers_recent_history():
    rec = recency_matrix([np.array([0, 1, 0, 2])], 5, gamma=0.5, normalize=False).toarray()[0]
    # ages: item0 at ages 3 and 1, item1 at age 2, item2 at age 0
    np.testing.assert_allclose(rec, [0.5**3 + 0.5, 0.25, 1.0, 0, 0])
    norm = recency_matrix([np.array([0, 1, 0, 2])], 5, gamma=0.5, normalize=True).toarray()[0]
    assert norm.sum() == pytest.approx(1.0)
    model = MarkovRepeat(MarkovRepeatConfig(transition_weight=0.0, repeat_weight=1.0, gamma=0.5))
    model.fit([["a", "b"]], ITEMS)
    s = model.score([["a", "b", "a", "c"]])[0]
    assert list(np.argsort(-s)[:3]) == [2, 0, 1]


def test_itemknn_similarity_symmetric_and_correct():
    train = [["a", "b", "c"], ["a", "b"], ["d", "d"]]
    model = ItemKNN(ItemKNNConfig(window=1, last_n=1)).fit(train, ITEMS)
    sim = model.similarity.toarray()
    np.testing.assert_allclose(sim, sim.T)
    # counts a2 b2 c1 d2; window-1 pairs: a-b twice, b-c once, d-d once (both directions).
    assert sim[0, 1] == pytest.approx(2 / np.sqrt(2 * 2))
    assert sim[1, 2] == pytest.approx(1 / np.sqrt(2 * 1))
    assert sim[0, 2] == 0.0  # a and c are two positions apart, outside the window
    assert sim[3, 3] == pytest.approx(2 / 2)  # a repeat is a co-occurrence with itself
    assert np.all(sim[4] == 0)
    wide = ItemKNN(ItemKNNConfig(window=2)).fit(train, ITEMS).similarity.toarray()
    assert wide[0, 2] == pytest.approx(1 / np.sqrt(2))


def test_itemknn_scores_sum_recency_weighted_similarities():
    train = [["a", "b", "c"], ["a", "b"], ["d", "e"]]
    model = ItemKNN(ItemKNNConfig(window=1, last_n=2, decay=0.5)).fit(train, ITEMS)
    sim = model.similarity.toarray()
    s = model.score([["d", "a", "c"]])[0]
    # last_n=2 -> c (age 0, weight 1) and a (age 1, weight 0.5); d is too old to vote.
    expected = sim[2] + 0.5 * sim[0] + 1e-9 * model.popularity
    np.testing.assert_allclose(s, expected)
    assert ITEMS[int(np.argmax(s))] == "b"
    # cooccurrence counts both directions of every pair
    c = cooccurrence([np.array([0, 1])], 5, window=1).toarray()
    assert c[0, 1] == c[1, 0] == 1


def test_itemknn_negative_history_weight_pushes_seen_items_down():
    train = [["a", "b"], ["a", "b"], ["a", "b"], ["b", "c"]]  # sim(a,b)=0.87 > sim(b,c)=0.5
    base = ItemKNN(ItemKNNConfig(window=2, last_n=2)).fit(train, ITEMS)
    s0 = base.score([["a", "b"]])[0]
    assert ITEMS[int(np.argmax(s0))] == "a"  # co-occurrence favours the history itself
    s1 = base.with_config(ItemKNNConfig(window=2, last_n=2, history_weight=-100.0)).score([["a", "b"]])[0]
    assert ITEMS[int(np.argmax(s1))] == "c"


def test_grid_search_tunes_on_valid_and_reuses_fits():
    # Users repeat their last item: the tuner must pick a strong repeat weight.
    rng = np.random.default_rng(0)
    users, items = [], []
    for u in range(40):
        seq = list(rng.choice(ITEMS, size=4))
        seq += [seq[-1]] * 2  # valid and test targets repeat the last training item
        users += [u] * len(seq)
        items += seq
    frame = leave_one_out(users, items)
    fits = []

    class Counting(MarkovRepeat):
        def fit(self, *a, **k):
            fits.append(1)
            return super().fit(*a, **k)

    res = grid_search(
        lambda **p: Counting(MarkovRepeatConfig(**p)),
        {"repeat_weight": [0.0, 10.0], "gamma": [0.1, 1.0]},
        training_sequences(frame), ITEMS, frame, metric="recall@1",
    )
    assert res.best_params == {"repeat_weight": 10.0, "gamma": 0.1}
    assert len(res.table) == 4 and len(fits) == 1
    assert evaluate(res.best_model, frame, "test").metrics["recall@1"] == 1.0
