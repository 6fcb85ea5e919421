"""Edge weights of the POI graph (pure functions, shared by the Spark job and the tests)."""
from __future__ import annotations

import numpy as np


def spatial_weight(distance_m, scale_m: float) -> np.ndarray:
    """Proximity kernel: 1 at distance 0, 1/2 at one cell edge length, decaying smoothly."""
    return 1.0 / (1.0 + np.asarray(distance_m, dtype=float) / scale_m)


def mobility_weight(transition_count) -> np.ndarray:
    """Dampened transition count: a pair visited 100 times is not 100x a pair visited once."""
    return np.log1p(np.asarray(transition_count, dtype=float))


def consecutive_pairs(user: np.ndarray, item: np.ndarray, ts_seconds: np.ndarray, max_gap_s: float):
    """Mobility transitions (src, dst) between consecutive visits of the same user.

    Input must be sorted by user then time. Self-transitions and gaps over ``max_gap_s`` are
    dropped (a visit a week later is not a movement between the two places).
    """
    same_user = user[1:] == user[:-1]
    gap_ok = (ts_seconds[1:] - ts_seconds[:-1]) <= max_gap_s
    moved = item[1:] != item[:-1]
    keep = same_user & gap_ok & moved
    return item[:-1][keep], item[1:][keep]
