"""Evaluation under the SimCIT protocol (SPEC §4): leave-one-out, full ranking, Recall/NDCG@K."""
from simcit.evaluation.metrics import (
    DEFAULT_KS,
    PairedComparison,
    metrics_from_ranks,
    paired_comparison,
    ranks_from_scores,
    ranks_from_topk,
)
from simcit.evaluation.ranking import EvaluationResult, Recommender, TopKRecommender, evaluate, evaluate_topk
from simcit.evaluation.sequences import Examples, examples, leave_one_out, training_sequences, validate_sequences

__all__ = [
    "DEFAULT_KS", "EvaluationResult", "Examples", "PairedComparison", "Recommender", "TopKRecommender",
    "evaluate", "evaluate_topk", "examples", "leave_one_out", "metrics_from_ranks", "paired_comparison",
    "ranks_from_scores", "ranks_from_topk", "training_sequences", "validate_sequences",
]
