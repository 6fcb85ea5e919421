"""Code-usage quality figures of a semantic-ID table (pure numpy on per-code counts)."""
from __future__ import annotations

import numpy as np


def entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of the usage of all K codes (0 = perfectly even, -> 1 = one code)."""
    x = np.sort(np.asarray(counts, dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    cum = np.cumsum(x)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)


def level_figures(counts: np.ndarray) -> dict[str, float]:
    """Usage of one level: counts has one entry per codeword (zeros for unused ones)."""
    h = entropy_bits(counts)
    return {
        "used_codes": int((np.asarray(counts) > 0).sum()),
        "usage": float((np.asarray(counts) > 0).mean()),
        "entropy_bits": h,
        "perplexity": float(2.0**h),
        "gini": gini(counts),
    }
