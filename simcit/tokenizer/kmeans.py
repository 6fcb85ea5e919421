"""Small k-means in torch: codebook initialisation and the RQ-KMeans baseline.

Deterministic for a seed (its own generator, never the global RNG); distances are computed in
row chunks so a large sample never materialises a full N x K matrix.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_CHUNK = 32768


def squared_distances(x: Tensor, c: Tensor, c_sq: Tensor | None = None) -> Tensor:
    """||x_i - c_k||^2 as ||x||^2 - 2 x.c + ||c||^2 (one GEMM, no cdist), clamped at 0. [N, K]"""
    if c_sq is None:
        c_sq = c.pow(2).sum(-1)
    d = torch.addmm(c_sq, x, c.t(), alpha=-2.0)
    return d.add_(x.pow(2).sum(-1, keepdim=True)).clamp_min_(0.0)


@torch.no_grad()
def nearest(x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the nearest centroid and the squared distance to it, per row of ``x``."""
    c_sq = c.pow(2).sum(-1)
    idx, dist = [], []
    for start in range(0, x.shape[0], _CHUNK):
        d = squared_distances(x[start:start + _CHUNK], c, c_sq)
        m = d.min(dim=1)
        idx.append(m.indices)
        dist.append(m.values)
    return torch.cat(idx), torch.cat(dist)


@dataclass
class KMeansResult:
    centroids: Tensor    # [k, D]
    assignments: Tensor  # [N] long
    inertia: float       # sum of squared distances to the assigned centroid


def _generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


@torch.no_grad()
def _kmeans_pp(x: Tensor, k: int, g: torch.Generator) -> Tensor:
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=g, device=x.device)
    centroids = [x[first]]
    closest = squared_distances(x, centroids[0]).squeeze(1)
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # fewer distinct points than k: fall back to uniform picks
            nxt = torch.randint(n, (1,), generator=g, device=x.device)
        else:
            nxt = torch.multinomial(closest / total, 1, generator=g)
        centroids.append(x[nxt])
        closest = torch.minimum(closest, squared_distances(x, centroids[-1]).squeeze(1))
    return torch.cat(centroids)


@torch.no_grad()
def kmeans(
    x: Tensor,
    k: int,
    iters: int = 20,
    seed: int = 0,
    init: str = "kmeans++",
    tol: float = 1e-6,
) -> KMeansResult:
    """Lloyd's k-means on rows of ``x`` [N, D] (N >= k). Empty clusters are re-seeded with the
    points farthest from their centroid, so every codeword ends up used."""
    if x.dim() != 2:
        raise ValueError(f"kmeans expects [N, D], got shape {tuple(x.shape)}")
    n = x.shape[0]
    if n < k:
        raise ValueError(f"kmeans needs at least k={k} samples, got {n}")
    x = x.detach().float()
    g = _generator(seed, x.device)
    if init == "kmeans++":
        c = _kmeans_pp(x, k, g)
    elif init == "random":
        c = x[torch.randperm(n, generator=g, device=x.device)[:k]].clone()
    else:
        raise ValueError(f"init must be 'kmeans++' or 'random', got {init!r}")

    scale = x.pow(2).sum(-1).mean().clamp_min(1e-12)
    assign, dist = nearest(x, c)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        new = sums / counts.clamp_min(1).unsqueeze(1).to(x.dtype)
        empty = (counts == 0).nonzero().squeeze(1)
        if empty.numel():
            far = dist.topk(empty.numel()).indices
            new[empty] = x[far]
        shift = (new - c).pow(2).sum(-1).mean()
        c = new
        assign, dist = nearest(x, c)
        if shift <= tol * scale:
            break
    return KMeansResult(c, assign, float(dist.sum()))
