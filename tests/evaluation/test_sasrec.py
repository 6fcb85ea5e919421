import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from simcit.evaluation.baselines.sasrec import SASRec, SASRecConfig, training_windows  # noqa: E402
from simcit.evaluation.ranking import evaluate  # noqa: E402
from simcit.evaluation.sequences import leave_one_out, training_sequences  # noqa: E402


def test_training_windows_cover_every_transition_once():
    seq = np.arange(12)
    wins = training_windows([seq, np.arange(1)], max_len=5)
    # tokens are ids + 1; windows overlap by one token, aligned on the end
    assert [w.tolist() for w in wins] == [
        [7, 8, 9, 10, 11, 12], [2, 3, 4, 5, 6, 7], [1, 2]
    ]
    targets = sorted(t for w in wins for t in w[1:].tolist())
    assert targets == list(range(2, 13))  # every item but the first is a target exactly once


def test_sasrec_learns_a_deterministic_cycle():
    n_items = 30
    items = [f"i{j}" for j in range(n_items)]
    rng = np.random.default_rng(0)
    users, seq_items = [], []
    for u in range(80):
        start, length = int(rng.integers(n_items)), int(rng.integers(8, 16))
        users += [u] * length
        seq_items += [items[(start + k) % n_items] for k in range(length)]
    frame = leave_one_out(users, seq_items)
    cfg = SASRecConfig(hidden=32, blocks=1, heads=1, max_len=10, dropout=0.0, lr=5e-3,
                       epochs=40, batch_size=32, patience=5, num_threads=1, seed=0,
                       early_stop_metric="recall@1")
    t0 = time.monotonic()
    model = SASRec(cfg).fit(training_sequences(frame), items, valid=frame)
    assert time.monotonic() - t0 < 30
    assert model.best_valid_metric is not None and model.log
    res = evaluate(model, frame, "test", ks=(1, 10))
    assert res.metrics["recall@1"] >= 0.95
    # full-ranking scores, one column per item, batched like every Recommender
    assert model.score([["i0", "i1"], []]).shape == (2, n_items)
    assert items[int(np.argmax(model.score([["i3", "i4", "i5"]])[0]))] == "i6"
