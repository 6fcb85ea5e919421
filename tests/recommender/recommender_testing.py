"""Helpers for the recommender tests: random SID tables, tiny models, a brute-force scorer.

(Not in conftest.py: other test folders have a conftest too, and `from conftest import` would
resolve to whichever was imported last.)
"""
from __future__ import annotations

import numpy as np
import torch

from simcit.recommender import RecommenderConfig, SIDVocabulary, build_model
from simcit.sids.disambiguation import append_disambiguation


def random_sids(rng: np.random.Generator, n: int, sizes: tuple[int, ...]) -> np.ndarray:
    """``n`` random L-level codes plus a TIGER-style disambiguation code (0, 1, ... per collision)."""
    return append_disambiguation(rng.integers(0, sizes, size=(n, len(sizes))))


TINY = RecommenderConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_position_embeddings=256)


def tiny_model(vocab: SIDVocabulary, arch: str = "qwen2", seed: int = 0):
    torch.manual_seed(seed)
    cfg = RecommenderConfig(**{**TINY.to_dict(), "arch": arch})
    model = build_model(cfg, vocab)
    # Random init gives near-uniform logits; sharpen them so rankings are not decided by 1e-7 ties.
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(25.0)
    return model.eval()


@torch.no_grad()
def brute_force_scores(model, prompt: torch.Tensor, sid_tokens: torch.Tensor) -> torch.Tensor:
    """Log-prob of every SID (rows of ``sid_tokens``) after ``prompt``: one cache-free forward
    over ``[prompt + sid]`` per item, unpadded -- an independent reference for the decoder."""
    seqs = torch.cat([prompt.expand(len(sid_tokens), -1), sid_tokens], dim=1)
    logp = torch.log_softmax(model(input_ids=seqs).logits.float(), dim=-1)
    t = prompt.numel()
    return logp[:, t - 1 : -1].gather(2, sid_tokens.unsqueeze(-1)).squeeze(-1).sum(1)
