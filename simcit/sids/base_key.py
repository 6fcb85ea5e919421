"""The L base codes of an item packed into one 64-bit integer (``base_key``).

assign-ids groups, sorts and counts items by their base codes. As one ``long`` instead of an
``array<int>``, the codes cost the JVM one fixed-width field to receive from the Python workers,
and Spark sorts, hashes and compares a primitive instead of an array: the collision window, the
uniqueness check and the code-usage counts all run on it. Level 0 sits in the highest bits, so
the key orders like the code tuple. ``bits = ceil(log2 K)`` per level; L x bits must fit 62 bits
(e.g. L = 3 with K <= 2^20, L = 4 with K <= 2^15), else :func:`key_bits` refuses the tokenizer.
"""
from __future__ import annotations

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F

MAX_KEY_BITS = 62  # a non-negative signed long, with room to spare


def key_bits(levels: int, codebook_size: int) -> int:
    """Bits per level of the key of an L x K tokenizer."""
    if levels < 1 or codebook_size < 1:
        raise ValueError(f"levels and codebook_size must be >= 1, got {levels}, {codebook_size}")
    bits = max(1, int(codebook_size - 1).bit_length())
    if levels * bits > MAX_KEY_BITS:
        raise ValueError(f"{levels} levels x {bits} bits (K = {codebook_size}) do not fit a {MAX_KEY_BITS}-bit "
                         f"base key; assign-ids supports L x ceil(log2 K) <= {MAX_KEY_BITS}")
    return bits


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """[n, L] non-negative codes -> [n] int64 keys."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size and (codes.min() < 0 or codes.max() >= (1 << bits)):
        raise ValueError(f"codes must lie in [0, {1 << bits}) to be packed with {bits} bits per level")
    key = np.zeros(codes.shape[0], dtype=np.int64)
    for level in range(codes.shape[1]):
        key = (key << bits) | codes[:, level]
    return key


def unpack(key: np.ndarray, levels: int, bits: int) -> np.ndarray:
    """[n] keys -> [n, L] codes (inverse of :func:`pack`)."""
    key = np.asarray(key, dtype=np.int64)
    mask = (1 << bits) - 1
    return np.stack([(key >> (bits * (levels - 1 - level))) & mask for level in range(levels)], axis=1)


def code_columns(key: Column, levels: int, bits: int) -> list[Column]:
    """Spark expressions of the L codes (int) of a ``base_key`` column."""
    mask = (1 << bits) - 1
    return [F.shiftright(key, bits * (levels - 1 - level)).bitwiseAND(F.lit(mask)).cast("int")
            for level in range(levels)]


def key_of_codes(codes: Column, levels: int, bits: int) -> Column:
    """Spark expression of the ``base_key`` of the first L entries of an array<int> ``codes``."""
    key = F.lit(0).cast("long")
    for level in range(levels):
        key = F.shiftleft(key, bits).bitwiseOR(F.element_at(codes, level + 1).cast("long"))
    return key
