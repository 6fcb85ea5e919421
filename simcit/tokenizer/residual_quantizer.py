"""Learnable residual quantizer with a Gumbel-softmax relaxation (SPEC 2.3).

r_0 = z; per level l: d_lk = ||r_{l-1} - c_lk||^2,
  training:  p_l = softmax((-d_l + g) / tau), g ~ Gumbel(0, 1),  e_l = p_l C_l   (differentiable)
  inference: k_l = argmin_k d_lk,                                  e_l = c_{l, k_l}
  r_l = r_{l-1} - e_l;  q = sum_l e_l   (so z = q + r_L exactly).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from simcit.tokenizer.kmeans import kmeans


def log_exponential_noise(shape: tuple[int, ...], like: Tensor,
                          generator: Optional[torch.Generator] = None) -> Tensor:
    """log(E) for E ~ Exp(1), i.e. minus a Gumbel(0, 1) sample, computed as log(-log U).

    This noise (L x B x K values per step) is the quantizer's largest non-GEMM cost and random
    number generation is serial. On CPU: torch's ``exponential_`` costs ~4x ``uniform_`` + two
    logs, and numpy's PCG64 fills float32 ~1.3x faster than torch's mt19937. Its seed is drawn
    from torch's generator, so ``torch.manual_seed`` / ``generator`` still fix the noise."""
    if like.device.type == "cpu":
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
        u = torch.from_numpy(np.random.default_rng(seed).random(shape, dtype=np.float32)).to(like.dtype)
    else:
        u = torch.empty(shape, dtype=like.dtype, device=like.device).uniform_(generator=generator)
    # U in [tiny, 1): -log U in (0, 87]; U = 0 would give an infinite Gumbel sample.
    return u.clamp_min_(torch.finfo(u.dtype).tiny).log_().neg_().log_()


# Logits further than this below their row's max are raised to it before the softmax. exp(-30)
# ~ 1e-13 is below fp32 resolution next to the max term (forward unchanged to ~1e-11 relative),
# and it keeps every probability, and its products in backward, far above the fp32 denormal
# range. Distances at tau = 0.2 span hundreds of logits; without the floor most probabilities
# are denormal and the GEMMs that consume them run ~100x slower on x86 (no FTZ/DAZ by default).
_LOGIT_FLOOR = 30.0


def _softmax_without_denormals(logits: Tensor) -> Tensor:
    floor = logits.detach().amax(dim=1, keepdim=True).sub_(_LOGIT_FLOOR)
    return torch.softmax(torch.maximum(logits, floor), dim=1)


@dataclass
class QuantizerOutput:
    quantized: Tensor                   # q = sum_l e_l            [B, D]
    codes: Tensor                       # argmin code per level    [B, L] long
    residual: Tensor                    # r_L = z - q              [B, D]
    distances: Optional[Tensor] = None  # d_lk (if asked)          [L, B, K]


class ResidualQuantizer(nn.Module):
    def __init__(self, levels: int, codebook_size: int, dim: int, tau: float = 0.2) -> None:
        super().__init__()
        self.levels, self.codebook_size, self.dim, self.tau = levels, codebook_size, dim, tau
        # Placeholder init; k-means on real latents replaces it (init_from_kmeans).
        self.codebooks = nn.Parameter(torch.randn(levels, codebook_size, dim) / dim ** 0.5)

    def forward(
        self,
        z: Tensor,
        soft: Optional[bool] = None,
        tau: Optional[float] = None,
        noise: bool = True,
        generator: Optional[torch.Generator] = None,
        return_distances: bool = False,
        return_codes: bool = True,
    ) -> QuantizerOutput:
        """Quantize ``z`` [B, D]. ``soft`` defaults to ``self.training``; ``noise=False`` drops
        the Gumbel noise (deterministic soft assignment); ``tau`` overrides the temperature.
        ``return_codes=False`` skips the argmin in soft mode (the training loss does not use it)."""
        soft = self.training if soft is None else soft
        tau = self.tau if tau is None else tau
        # unbind once: per-level indexing of the parameter would cost a zero-fill + copy + add
        # per level in backward; UnbindBackward stacks the level gradients in one op
        cbs = self.codebooks.unbind(0)
        c_sqs = self.codebooks.pow(2).sum(-1).unbind(0)  # ||c||^2, [K] per level
        log_e = None
        if soft and noise:
            log_e = log_exponential_noise((self.levels, z.shape[0], self.codebook_size), z, generator)
        r = z
        picked: list[Tensor] = []
        codes, dists = [], []
        for level, (c, c_sq) in enumerate(zip(cbs, c_sqs)):
            if soft:
                # Softmax is shift-invariant per row, so ||r||^2 is dropped: the score
                # (2 r.c - ||c||^2) / tau = (-d + ||r||^2) / tau comes out of a single addmm.
                score = torch.addmm(c_sq, r, c.t(), beta=-1.0 / tau, alpha=2.0 / tau)
                if return_codes:
                    codes.append(score.detach().argmax(dim=1))
                # Gumbel noise g = -log(E), E ~ Exp(1): logits = score + g / tau.
                logits = score if log_e is None else torch.sub(score, log_e[level], alpha=1.0 / tau)
                e = _softmax_without_denormals(logits) @ c
                if return_distances:
                    dists.append((r.pow(2).sum(-1, keepdim=True) - tau * score).clamp_min(0.0).detach())
            else:
                score = torch.addmm(c_sq, r, c.t(), beta=-1.0, alpha=2.0)
                k = score.argmax(dim=1)
                codes.append(k)
                e = c.index_select(0, k)
                picked.append(e)
                if return_distances:
                    dists.append((r.pow(2).sum(-1, keepdim=True) - score).clamp_min(0.0).detach())
            r = r - e
        # soft: q = z - r_L (one op instead of a running sum; same value and gradient);
        # hard: the exact sum of the chosen codewords
        q = torch.stack(picked).sum(0) if picked else z - r
        return QuantizerOutput(
            quantized=q,
            codes=torch.stack(codes, dim=1) if codes else z.new_empty((z.shape[0], 0), dtype=torch.long),
            residual=r,
            distances=torch.stack(dists) if return_distances else None,
        )

    @torch.no_grad()
    def codes(self, z: Tensor) -> Tensor:
        """Hard codes [B, L] (argmin per level)."""
        return self.forward(z, soft=False).codes

    @torch.no_grad()
    def init_from_kmeans(self, z: Tensor, iters: int = 20, seed: int = 0) -> None:
        """Residual k-means, level by level: C_l = kmeans(r_{l-1}); r_l = r_{l-1} - C_l[assign]."""
        r = z.detach().to(self.codebooks.dtype)
        for level in range(self.levels):
            res = kmeans(r, self.codebook_size, iters=iters, seed=seed + level)
            self.codebooks.data[level].copy_(res.centroids)
            r = r - res.centroids[res.assignments]
