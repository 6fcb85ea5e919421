"""Codeword regulariser (SPEC 2.6): mean over levels of the mean pairwise dot product of the
L2-normalised codewords, off-diagonal pairs only. Minimising it spreads codewords apart.

sum_{k != k'} c_k.c_k' = ||sum_k c_k||^2 - sum_k ||c_k||^2, so the K x K Gram matrix is never
built: O(L K D) instead of O(L K^2 D).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def codeword_regularizer(codebooks: Tensor) -> Tensor:
    """codebooks [L, K, D] -> scalar in [-1/(K-1), 1]."""
    k = codebooks.shape[1]
    c = F.normalize(codebooks, dim=-1)
    off_diagonal = c.sum(dim=1).pow(2).sum(-1) - c.pow(2).sum(dim=(1, 2))  # [L]
    return (off_diagonal / (k * (k - 1))).mean()
