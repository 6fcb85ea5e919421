"""Randomised subspace iteration for the top eigenpairs of a large sparse symmetric matrix.

The algorithm is written so that every step touching n-sized data is a row-local operation or a
sum over rows; only k x k matrices (k = dim + oversample) are combined centrally. The Spark
job runs the row-local parts per partition and the k x k parts on the driver, so driver memory
is O(k^2) whatever the number of nodes; :func:`embed_sparse` runs the same steps in memory with
scipy (reference implementation, used by tests and small data).

Steps (Halko, Martinsson & Tropp 2011, Alg. 4.4 with Cholesky-QR orthonormalisation):
  Y = M @ Omega;  repeat q times: Y = M @ (Y R^-1)  with R^T R = Y^T Y
  R from Y^T Y;  T = R^-T (Y^T M Y) R^-1 = V diag(lam) V^T;  embedding = Y R^-1 V_top |lam_top|^(1/2)
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def gram(block: np.ndarray) -> np.ndarray:
    """Partial Gram matrix of a block of rows (summed over partitions by the caller)."""
    block = np.asarray(block, dtype=np.float64)
    return block.T @ block


def cross_gram(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.asarray(left, dtype=np.float64).T @ np.asarray(right, dtype=np.float64)


def orthonormalizer(g: np.ndarray, eps: float = 1e-10) -> np.ndarray:
    """R^-1 from a Gram matrix, so that Q = Y @ R^-1 has orthonormal columns (Cholesky-QR).

    A relative ridge keeps rank-deficient blocks (tiny graphs, duplicate columns) factorable.
    """
    g = (g + g.T) / 2
    ridge = eps * max(float(np.trace(g)), 1e-30)
    r = np.linalg.cholesky(g + ridge * np.eye(len(g))).T
    return np.linalg.inv(r)


def ritz_projection(t: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``dim`` eigenpairs of the small projected matrix T (by magnitude), as (map, values).

    ``map`` is k x dim: the embedding of a row q of Q is ``q @ map``; eigenvalue weighting
    |lam|^(1/2) is folded in (the symmetric analogue of U Sigma^(1/2)).
    """
    t = (t + t.T) / 2
    lam, vec = np.linalg.eigh(t)
    order = np.argsort(-np.abs(lam))[:dim]
    lam, vec = lam[order], vec[:, order]
    # Deterministic signs: make the largest-magnitude entry of each eigenvector positive.
    signs = np.sign(vec[np.argmax(np.abs(vec), axis=0), np.arange(vec.shape[1])])
    signs[signs == 0] = 1
    vec = vec * signs
    return vec * np.sqrt(np.abs(lam))[None, :], lam


def test_block(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n, k))


def normalize_rows(x: np.ndarray, eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised rows and a mask of rows that had a usable (non-zero) norm."""
    norms = np.linalg.norm(x, axis=1)
    ok = norms > eps
    out = np.zeros_like(x, dtype=np.float32)
    out[ok] = (x[ok] / norms[ok, None]).astype(np.float32)
    return out, ok


def lazy_walk_matrix(adjacency: sp.spmatrix) -> sp.csr_matrix:
    """M = (I + D^-1/2 A D^-1/2) / 2: eigenvalues in [0, 1], large = smooth over the graph."""
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    a = (a + a.T) / 2
    d = np.asarray(a.sum(axis=1)).ravel()
    inv = np.zeros_like(d)
    inv[d > 0] = 1.0 / np.sqrt(d[d > 0])
    s = sp.diags(inv) @ a @ sp.diags(inv)
    return ((sp.identity(a.shape[0]) + s) / 2).tocsr()


def embed_sparse(
    m: sp.spmatrix, dim: int, oversample: int = 8, power_iters: int = 1, seed: int = 0
) -> np.ndarray:
    """In-memory reference: n x dim embedding U_top |lam_top|^(1/2) of symmetric ``m``.

    Same passes as the Spark version: Y = M Omega; Y = M (Y R^-1) per power iteration;
    Rayleigh-Ritz on span(Y) from Y^T Y and Y^T M Y.
    """
    n = m.shape[0]
    k = min(dim + oversample, n)
    y = m @ test_block(n, k, seed)
    for _ in range(power_iters):
        y = m @ (y @ orthonormalizer(gram(y)))
    r_inv = orthonormalizer(gram(y))
    mapping, _ = ritz_projection(r_inv.T @ cross_gram(y, m @ y) @ r_inv, min(dim, k))
    return y @ (r_inv @ mapping)
