import numpy as np
import scipy.sparse as sp

from geo.randomized_eigen import embed_sparse, lazy_walk_matrix, normalize_rows, orthonormalizer, ritz_projection


def _graph(n=300, seed=0):
    """Three dense communities, sparsely linked: a clear top eigenspace."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    same = labels[:, None] == labels[None, :]
    p = np.where(same, 0.15, 0.005)
    a = (rng.random((n, n)) < p).astype(float)
    a = np.triu(a, 1)
    return sp.csr_matrix(a + a.T), labels


def test_orthonormalizer_makes_orthonormal_columns():
    y = np.random.default_rng(1).normal(size=(200, 12))
    q = y @ orthonormalizer(y.T @ y)
    assert np.allclose(q.T @ q, np.eye(12), atol=1e-6)


def test_ritz_projection_recovers_eigenpairs():
    rng = np.random.default_rng(2)
    v, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    lam = np.array([5.0, -4.0, 3.0, 0.5, 0.2, 0.1])
    t = v @ np.diag(lam) @ v.T
    mapping, values = ritz_projection(t, 3)
    assert np.allclose(np.abs(values), [5, 4, 3])
    assert np.allclose(mapping.T @ mapping, np.diag([5, 4, 3]), atol=1e-8)


def test_embedding_spans_the_exact_top_eigenspace():
    a, _ = _graph()
    m = lazy_walk_matrix(a)
    emb = embed_sparse(m, dim=3, oversample=10, power_iters=10, seed=0)
    lam, vec = np.linalg.eigh(m.toarray())
    top = vec[:, np.argsort(-np.abs(lam))[:3]]
    # principal angles between span(emb) and the exact top-3 eigenvectors are ~0
    q, _ = np.linalg.qr(emb)
    cosines = np.linalg.svd(top.T @ q, compute_uv=False)
    assert cosines.min() > 0.98
    # column energies equal |lambda| (U |Lambda|^(1/2))
    assert np.allclose(np.sort((emb**2).sum(0))[::-1], np.sort(np.abs(lam))[::-1][:3], rtol=2e-2)


def test_embedding_separates_communities():
    a, labels = _graph(seed=3)
    emb, ok = normalize_rows(embed_sparse(lazy_walk_matrix(a), dim=8, oversample=8, power_iters=3))
    assert ok.all()
    cos = emb @ emb.T
    same = labels[:, None] == labels[None, :]
    assert cos[same].mean() > cos[~same].mean() + 0.3
