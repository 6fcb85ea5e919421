"""Length-grouped batches: every window once, similar lengths per batch, random order."""
import numpy as np

from simcit.recommender.length_grouping import length_grouped_batches, random_batches


def _padded(lengths, batches):
    return sum(int(lengths[b].max()) * len(b) for b in batches)


def test_every_window_once_and_far_less_padding_than_random():
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 6, size=900), np.full(100, 20)])  # Scientific-like
    grouped = length_grouped_batches(lengths, 64, np.random.default_rng(1))
    plain = random_batches(len(lengths), 64, np.random.default_rng(1))
    for batches in (grouped, plain):
        assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
        assert max(len(b) for b in batches) <= 64
    assert _padded(lengths, grouped) < 1.1 * lengths.sum() < _padded(lengths, plain) / 2


def test_batches_and_their_members_change_with_the_seed():
    lengths = np.full(640, 7)  # all equal: the grouping must not fix the composition
    a = length_grouped_batches(lengths, 64, np.random.default_rng(1))
    b = length_grouped_batches(lengths, 64, np.random.default_rng(2))
    assert {tuple(sorted(x)) for x in a} != {tuple(sorted(x)) for x in b}
    assert [len(x) for x in a] == [64] * 10
