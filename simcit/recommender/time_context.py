"""Context tokens from timestamps: one hour-of-week bucket token per interaction (POI data).

``<how_{day * 8 + hour // 3}>``: 7 days x 8 three-hour buckets = 56 tokens. The bucket of an
item is placed before its SID in training sequences and prompts; the bucket of the *requested*
visit ends the prompt (the time of a request is known when it is made). Buckets are in UTC: a
fixed city offset only relabels them, and daylight saving shifts a bucket edge by one hour.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

HOURS_PER_BUCKET = 3
BUCKETS_PER_DAY = 24 // HOURS_PER_BUCKET
TIME_TOKENS: tuple[str, ...] = tuple(f"<how_{i}>" for i in range(7 * BUCKETS_PER_DAY))


def hour_of_week_buckets(timestamps: Sequence | np.ndarray) -> np.ndarray:
    """Bucket index (0..55, Monday 00-03h = 0) of each timestamp (datetime64 / datetime)."""
    ts = np.asarray(timestamps, dtype="datetime64[us]")
    days = ts.astype("datetime64[D]")
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday (Monday = 0)
    hour = (ts - days).astype("timedelta64[h]").astype(np.int64)
    return weekday * BUCKETS_PER_DAY + hour // HOURS_PER_BUCKET


def time_tokens(timestamps: Sequence | np.ndarray) -> list[list[str]]:
    """One context-token list per timestamp (the format ``SIDSequenceDataset`` takes)."""
    return [[TIME_TOKENS[b]] for b in hour_of_week_buckets(timestamps).tolist()]
