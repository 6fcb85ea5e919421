"""Linear warm-up then cosine decay to 0 (SPEC 2.7), per optimizer step."""
from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_fraction: float) -> LambdaLR:
    """Scales every parameter group's own lr (so per-group multipliers survive)."""
    total = max(1, int(total_steps))
    warmup = int(round(warmup_fraction * total))
    return LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, total, warmup))
