"""Attention fusion of the view latents (SPEC 2.2).

s_m = w^T tanh(W h_m + b) with one scorer shared by all views; alpha = softmax over the views the
item HAS (absent views get score -inf, hence weight exactly 0); z = sum_m alpha_m h_m.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class AttentionFusion(nn.Module):
    def __init__(self, dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or dim
        self.proj = nn.Linear(dim, hidden_dim)             # W, b
        self.score = nn.Linear(hidden_dim, 1, bias=False)  # w

    def forward(self, h: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
        """h: [M, B, D] stacked view latents; present: bool [M, B] (each item needs >= 1 view).
        Returns z [B, D] and alpha [M, B]."""
        s = self.score(torch.tanh(self.proj(h))).squeeze(-1)  # [M, B], one GEMM for all views
        if not bool(present.all()):
            s = s.masked_fill(~present, float("-inf"))
        alpha = torch.softmax(s, dim=0)
        # Absent rows of h are finite (inputs are zeroed) and weighted by exactly 0.
        z = (alpha.unsqueeze(-1) * h).sum(dim=0)
        return z, alpha
