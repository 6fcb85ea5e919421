"""Floor baselines evaluated under the SimCIT protocol (SPEC §4)."""
from simcit.evaluation.baselines.item_knn import ItemKNN, ItemKNNConfig
from simcit.evaluation.baselines.markov_repeat import MarkovRepeat, MarkovRepeatConfig
from simcit.evaluation.baselines.most_pop import MostPop, MostPopConfig

__all__ = ["ItemKNN", "ItemKNNConfig", "MarkovRepeat", "MarkovRepeatConfig", "MostPop", "MostPopConfig"]
