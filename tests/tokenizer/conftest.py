"""Shared fixtures for the tokenizer tests: small synthetic multi-view data, kept tiny so that the
whole folder runs in well under a minute on two shared cores."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simcit.tokenizer import ViewBatch


@pytest.fixture(autouse=True)
def _one_thread():
    # Test tensors are tiny: a second thread only adds synchronisation, and on a shared 2-core
    # machine a busy neighbour makes OpenMP barriers very slow.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def clustered_views(n: int, dims: dict[str, int], clusters: int, noise: float, seed: int = 0,
                    common: float = 0.0) -> tuple[ViewBatch, torch.Tensor]:
    """Items drawn from ``clusters`` latent prototypes; each view is a fixed random linear map of
    the item's own latent (prototype + per-item offset) plus noise, L2-normalised. Views of the
    same item therefore agree with each other, which is what the contrastive loss exploits.
    ``common`` adds a shared direction per view (real text embeddings are anisotropic like that)."""
    g = torch.Generator().manual_seed(seed)
    latent_dim = 16
    protos = torch.randn(clusters, latent_dim, generator=g) * 2.0
    labels = torch.randint(clusters, (n,), generator=g)
    latent = protos[labels] + 0.7 * torch.randn(n, latent_dim, generator=g)
    feats = {}
    for name, d in dims.items():
        w = torch.randn(latent_dim, d, generator=g)
        base = torch.randn(d, generator=g) * common * 8.0
        feats[name] = F.normalize(base + latent @ w + noise * torch.randn(n, d, generator=g), dim=1)
    return ViewBatch.dense(feats), labels


@pytest.fixture
def make_clustered_views():
    """The ``clustered_views`` factory, as a fixture (test folders are not packages)."""
    return clustered_views
