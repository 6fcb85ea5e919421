"""The "sequences" frame that evaluation consumes, and the leave-one-out split that builds it.

One row per (user, split):
- ``train``: ``history + [target]`` is the user's whole training part (all but the last two);
- ``valid``: history = training part, target = second-to-last item;
- ``test``:  history = training part + valid item, target = last item.
Histories are lists of item-id strings, most recent last.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")
COLUMNS = ["user_id", "split", "history", "target"]


@dataclass(frozen=True)
class Examples:
    """Aligned evaluation examples of one split."""

    user_ids: list[str]
    histories: list[list[str]]
    targets: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    def slice(self, start: int, stop: int) -> "Examples":
        return Examples(
            self.user_ids[start:stop], self.histories[start:stop], self.targets[start:stop]
        )


def leave_one_out(
    user_ids: Sequence, item_ids: Sequence, min_interactions: int = 3
) -> pd.DataFrame:
    """Split chronologically ordered interactions (the caller sorts) into the sequences frame.

    Users with fewer than ``min_interactions`` interactions are dropped: with 3 every user has a
    non-empty training part, so valid and test examples both have a history.
    """
    if min_interactions < 3:
        raise ValueError("min_interactions must be >= 3 (train part, valid and test targets)")
    frame = pd.DataFrame({"u": np.asarray(user_ids).astype(str), "i": np.asarray(item_ids).astype(str)})
    rows: list[tuple[str, str, list[str], str]] = []
    # groupby(sort=False) keeps first-appearance user order and the caller's row order inside.
    for user, items in frame.groupby("u", sort=False)["i"]:
        seq = items.tolist()
        if len(seq) < min_interactions:
            continue
        train = seq[:-2]
        rows.append((user, "train", train[:-1], train[-1]))
        rows.append((user, "valid", train, seq[-2]))
        rows.append((user, "test", seq[:-1], seq[-1]))
    return pd.DataFrame(rows, columns=COLUMNS)


def training_sequences(frame: pd.DataFrame) -> list[list[str]]:
    """Full training part of every user: the only interactions a model may learn from."""
    train = frame[frame["split"] == "train"]
    return [list(h) + [t] for h, t in zip(train["history"], train["target"])]


def examples(frame: pd.DataFrame, split: str) -> Examples:
    if split not in ("valid", "test", "train"):
        raise ValueError(f"unknown split {split!r}")
    part = frame[frame["split"] == split]
    return Examples(
        [str(u) for u in part["user_id"]],
        [[str(i) for i in h] for h in part["history"]],
        [str(t) for t in part["target"]],
    )


def validate_sequences(frame: pd.DataFrame) -> None:
    """Check that a frame (e.g. one produced by the Delta pipeline) obeys the leave-one-out
    layout; raises ValueError naming the first offending user."""
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"sequences frame lacks columns {sorted(missing)}")
    bad_split = set(frame["split"]) - set(SPLITS)
    if bad_split:
        raise ValueError(f"unknown split values {sorted(bad_split)}")
    by_user: dict[str, dict[str, tuple[list, str]]] = {}
    for u, s, h, t in zip(frame["user_id"], frame["split"], frame["history"], frame["target"]):
        d = by_user.setdefault(str(u), {})
        if s in d:
            raise ValueError(f"user {u}: more than one {s} row")
        d[s] = (list(h), t)
    for u, d in by_user.items():
        if "train" in d and "valid" in d:
            h, t = d["train"]
            if d["valid"][0] != h + [t]:
                raise ValueError(f"user {u}: valid history != training part")
        if "valid" in d and "test" in d:
            h, t = d["valid"]
            if d["test"][0] != h + [t]:
                raise ValueError(f"user {u}: test history != training part + valid item")
