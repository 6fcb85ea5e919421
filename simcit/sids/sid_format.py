"""The SID token format: one token per level with a level prefix, ``<a_12><b_3><c_200><d_0>``."""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

LEVEL_PREFIXES = "abcdefghijklmnopqrstuvwxyz"


def sid_string(codes) -> str:
    return "".join(f"<{LEVEL_PREFIXES[i]}_{int(c)}>" for i, c in enumerate(codes))


def sid_expression(codes: Column, length: int) -> Column:
    """Native Spark version of :func:`sid_string` for an array column of ``length`` codes (one
    ``format_string``: cheaper per row than concatenating 3 x length pieces)."""
    pattern = "".join(f"<{LEVEL_PREFIXES[i]}_%d>" for i in range(length))
    return F.format_string(pattern, *[F.element_at(codes, i + 1) for i in range(length)])
