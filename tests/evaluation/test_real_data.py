"""Protocol regression on the real datasets with hyper-parameters fixed at their tuned values
(tuning itself runs in ``python -m simcit.evaluation.run_baselines``)."""
import pytest

from simcit.evaluation.baselines import ItemKNN, ItemKNNConfig, MarkovRepeat, MarkovRepeatConfig, MostPop
from simcit.evaluation.metrics import paired_comparison
from simcit.evaluation.ranking import evaluate
from simcit.evaluation.raw_sequences import DATA_ROOT, load_nyc, load_scientific
from simcit.evaluation.sequences import training_sequences

pytestmark = pytest.mark.skipif(not (DATA_ROOT / "foursquare_nyc").exists(), reason="real data not present")


def test_nyc_repeat_and_markov_floors():
    data = load_nyc()
    train = training_sequences(data.sequences)
    repeat = MarkovRepeat(MarkovRepeatConfig(transition_weight=0.0, gamma=0.98)).fit(train, data.items)
    markov = MarkovRepeat(MarkovRepeatConfig(repeat_weight=8.0, gamma=0.98)).fit(train, data.items)
    pop = MostPop().fit(train, data.items)
    r, m, p = (evaluate(x, data.sequences, "test") for x in (repeat, markov, pop))
    assert r.metrics["recall@10"] == pytest.approx(0.611, abs=0.005)
    assert m.metrics["recall@10"] == pytest.approx(0.617, abs=0.005)
    assert m.metrics["ndcg@10"] == pytest.approx(0.441, abs=0.005)
    assert p.metrics["recall@10"] < 0.1
    gap = paired_comparison(m.per_user["recall@10"], p.per_user["recall@10"])
    assert gap.z > 10  # personalisation beats popularity by far more than the noise


def test_scientific_itemknn_floor():
    data = load_scientific()
    train = training_sequences(data.sequences)
    cfg = ItemKNNConfig(window=5, last_n=10, decay=0.7, history_weight=-100.0)
    res = evaluate(ItemKNN(cfg).fit(train, data.items), data.sequences, "test")
    assert res.metrics["recall@10"] == pytest.approx(0.0996, abs=0.003)
    assert res.metrics["ndcg@10"] == pytest.approx(0.0721, abs=0.003)
