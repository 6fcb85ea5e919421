"""What a tokenizer's training step returns."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class LossOutput:
    loss: Tensor                # scalar to backpropagate
    metrics: dict[str, float]   # detached values for logging ("loss" always among them)
