import numpy as np

from simcit.sids.code_quality import gini, level_figures
from simcit.sids.disambiguation import append_disambiguation
from simcit.sids.sid_format import sid_string


def test_collisions_get_0_1_2_in_row_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    out = append_disambiguation(codes)
    assert out[:, :2].tolist() == codes.tolist()
    assert out[:, 2].tolist() == [0, 0, 1, 2, 0]
    assert len({tuple(r) for r in out}) == len(out)


def test_random_codes_become_unique():
    codes = np.random.default_rng(0).integers(0, 3, size=(500, 2))
    out = append_disambiguation(codes)
    assert len({tuple(r) for r in out}) == 500
    for base in {tuple(r) for r in codes}:
        d = out[(codes == base).all(axis=1), 2]
        assert sorted(d.tolist()) == list(range(len(d)))


def test_sid_string_and_quality_figures():
    assert sid_string([12, 3, 200, 0]) == "<a_12><b_3><c_200><d_0>"
    assert gini(np.array([5, 5, 5, 5])) == 0.0
    assert gini(np.array([0, 0, 0, 20])) == 0.75
    f = level_figures(np.array([10, 10, 0, 0]))
    assert f["used_codes"] == 2 and f["usage"] == 0.5 and np.isclose(f["perplexity"], 2.0)


def test_window_partitions_are_a_multiple_of_the_cores_and_bounded_per_task():
    from simcit.sids.collisions import ROWS_PER_WINDOW_TASK, window_partitions

    assert window_partitions(1_000_000, 2) == 2  # AQE would coalesce 4 -> 3 uneven tasks on 2 cores
    assert window_partitions(0, 2) == 2 and window_partitions(10, 0) == 1
    for rows, cores in [(10_000_000, 2), (6_000_000, 64), (170_000_000, 16)]:
        n = window_partitions(rows, cores)
        assert n % cores == 0 and rows / n <= ROWS_PER_WINDOW_TASK
        assert n == cores or rows / (n - cores) > ROWS_PER_WINDOW_TASK  # no more rounds than needed
