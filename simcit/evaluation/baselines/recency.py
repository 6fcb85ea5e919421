"""Recency-weighted bag of a user's own history, as a sparse ``[users, items]`` matrix."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import scipy.sparse as sp


def recency_matrix(
    histories: Sequence[np.ndarray],
    n_items: int,
    gamma: float,
    last_n: Optional[int] = None,
    normalize: bool = False,
) -> sp.csr_matrix:
    """Row u holds sum over positions p of item j of ``gamma ** age`` (age 0 = most recent).

    ``last_n`` keeps only the most recent positions; ``normalize`` makes each row sum to 1 so the
    weight that mixes it with another distribution does not depend on the history length.
    """
    rows, cols, vals = [], [], []
    for u, h in enumerate(histories):
        h = np.asarray(h, dtype=np.int64)
        if last_n is not None:
            h = h[-last_n:] if last_n > 0 else h[:0]
        if h.size == 0:
            continue
        age = np.arange(h.size - 1, -1, -1, dtype=np.float64)
        w = np.power(gamma, age)
        if normalize:
            w = w / w.sum()
        rows.append(np.full(h.size, u, dtype=np.int64))
        cols.append(h)
        vals.append(w)
    if not rows:
        return sp.csr_matrix((len(histories), n_items))
    # Duplicate (row, col) pairs are summed by the COO -> CSR conversion: repeats add up.
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(histories), n_items),
    )
    return m.tocsr()
