"""In-memory collision resolution (numpy): the reference of the Spark job's disambiguation.

Items sharing all L codes get a last code 0, 1, 2, ... in row order. ``assign-ids`` does the same
distributed (ordered by item id, with refresh stability); this version serves tests, benchmarks
and small in-process catalogues.
"""
from __future__ import annotations

import numpy as np


def append_disambiguation(codes: np.ndarray) -> np.ndarray:
    """[n, L] codes -> [n, L + 1] codes whose rows are all distinct."""
    codes = np.asarray(codes)
    n = len(codes)
    order = np.lexsort(codes.T[::-1])  # stable: equal rows keep their row order
    s = codes[order]
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = (s[1:] != s[:-1]).any(axis=1)
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    last = np.empty(n, dtype=np.int64)
    last[order] = np.arange(n) - group_start
    return np.concatenate([codes.astype(np.int64), last[:, None]], axis=1)
