"""Deterministic train / validation split of items, and the k-means sample, by a hash of ``item_id``.

The same item lands on the same side in every run, on every worker and whatever the table's file
layout or row order: the side is a pure function of the id (keyed BLAKE2b, 64 bits) and the
fraction. Growing the catalogue never moves an existing item from one side to the other. The
sample that initialises k-means codebooks (and fits RQ-KMeans) is chosen the same way, keyed by
the seed, so a rerun with the same seed fits on the same items (a Bernoulli sample over Ray Data
blocks depended on the block layout and order: RQ-KMeans fits were not reproducible).
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Union

import numpy as np
import pyarrow as pa

# Personalisation string of the hash: the split is independent of any other id hashing.
_PERSON = b"simcit-valid"
_SAMPLE_PERSON = b"simcit-sample"
_TWO_64 = float(1 << 64)


def _hash64(item_id: str, person: bytes = _PERSON, salt: bytes = b"") -> int:
    h = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8, person=person, salt=salt)
    return int.from_bytes(h.digest(), "big")


def _below(item_ids, fraction: float, person: bytes, salt: bytes = b"") -> np.ndarray:
    ids = item_ids.to_pylist() if isinstance(item_ids, (pa.Array, pa.ChunkedArray)) else list(item_ids)
    if any(i is None for i in ids):
        raise ValueError("item_id must not be null")
    hashes = np.fromiter((_hash64(i, person, salt) for i in ids), dtype=np.uint64, count=len(ids))
    threshold = np.uint64(min(int(fraction * _TWO_64), (1 << 64) - 1))
    return hashes < threshold


def valid_mask(item_ids: Union[pa.Array, pa.ChunkedArray, Iterable[str]], fraction: float) -> np.ndarray:
    """Bool [n]: True where the item belongs to the validation part (about ``fraction`` of ids)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    return _below(item_ids, fraction, _PERSON)


def sample_mask(item_ids: Union[pa.Array, pa.ChunkedArray, Iterable[str]], fraction: float, seed: int) -> np.ndarray:
    """Bool [n]: True where the item is in the seed's sample (about ``fraction`` of ids)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return _below(item_ids, fraction, _SAMPLE_PERSON, int(seed).to_bytes(8, "big", signed=True))
