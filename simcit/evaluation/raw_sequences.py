"""Sequences frames straight from the raw CSVs, for protocol checks and tests only.

The production pipeline builds the same frame from its Delta tables; this loader is the
reference it can be compared against.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from simcit.evaluation.sequences import leave_one_out

DATA_ROOT = Path(os.environ.get("SIMCIT_RAW_DATA", Path(__file__).resolve().parents[2] / "data"))


@dataclass
class RawDataset:
    name: str
    sequences: pd.DataFrame
    items: list[str]


def _ordered(df: pd.DataFrame, user: str, order: str) -> pd.DataFrame:
    # Ties in the order column keep file row order: the row number is the last sort key.
    df = df.assign(_row=np.arange(len(df)))
    return df.sort_values([user, order, "_row"], kind="stable")


def load_nyc(root: Path = DATA_ROOT, min_interactions: int = 3) -> RawDataset:
    """Foursquare NYC check-ins; item = ``poi_id``, ordered by ``utc_ts`` then file row."""
    df = pd.read_csv(root / "foursquare_nyc" / "checkins.csv.gz", usecols=["user_id", "poi_id", "utc_ts"])
    df = _ordered(df, "user_id", "utc_ts")
    items = [str(i) for i in sorted(df["poi_id"].unique())]
    seqs = leave_one_out(df["user_id"].to_numpy(), df["poi_id"].to_numpy(), min_interactions)
    return RawDataset("nyc", seqs, items)


def load_scientific(root: Path = DATA_ROOT, min_interactions: int = 3) -> RawDataset:
    """Amazon Industrial & Scientific; ordered by ``position``; items from ``items.csv.gz``."""
    base = root / "amazon_scientific"
    df = pd.read_csv(base / "interactions.csv.gz")
    df = _ordered(df, "user_id", "position")
    catalogue = pd.read_csv(base / "items.csv.gz", usecols=["item_id"])["item_id"]
    items = [str(i) for i in sorted(set(catalogue) | set(df["item_id"]))]
    seqs = leave_one_out(df["user_id"].to_numpy(), df["item_id"].to_numpy(), min_interactions)
    return RawDataset("scientific", seqs, items)


LOADERS = {"nyc": load_nyc, "scientific": load_scientific}
