import pytest
import torch

from simcit.tokenizer import kmeans, nearest, squared_distances


def test_squared_distances_match_brute_force():
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(50, 7, generator=g), torch.randn(9, 7, generator=g)
    brute = ((x[:, None, :] - c[None]) ** 2).sum(-1)
    torch.testing.assert_close(squared_distances(x, c), brute, atol=1e-4, rtol=1e-5)
    idx, dist = nearest(x, c)
    assert torch.equal(idx, brute.argmin(1))
    torch.testing.assert_close(dist, brute.min(1).values, atol=1e-4, rtol=1e-5)


def test_kmeans_recovers_separated_clusters_and_is_deterministic():
    g = torch.Generator().manual_seed(1)
    centers = torch.randn(5, 4, generator=g) * 10
    labels = torch.arange(500) % 5
    x = centers[labels] + 0.1 * torch.randn(500, 4, generator=g)
    a = kmeans(x, 5, iters=30, seed=7)
    b = kmeans(x, 5, iters=30, seed=7)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)
    # every true cluster maps to exactly one k-means cluster
    pairs = {(int(t), int(p)) for t, p in zip(labels, a.assignments)}
    assert len(pairs) == 5
    assert a.inertia < 500 * 4 * 0.1 ** 2 * 2
    # assignments are the nearest centroids
    assert torch.equal(a.assignments, nearest(x, a.centroids)[0])


def test_kmeans_uses_every_centroid_and_rejects_too_few_points():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(2))
    res = kmeans(x, 16, iters=10, seed=0, init="random")
    assert torch.bincount(res.assignments, minlength=16).min() >= 1
    with pytest.raises(ValueError, match="at least k"):
        kmeans(x[:3], 4)
