"""``item_features`` rows (Arrow) -> the tokenizer's ``ViewBatch``.

A null embedding (or one holding a NaN) becomes ``present=False`` for that item and view; its
row in the feature matrix is a zero placeholder that models mask out, never data. Items that
have none of the selected views cannot be tokenized and are filtered out before training.
"""
from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch

from simcit.tokenizer import ViewBatch
from simcit.train.item_split import sample_mask, valid_mask

# view name -> embedding column of ``item_features`` (simcit.schemas.ITEM_FEATURES)
VIEW_COLUMNS: dict[str, str] = {"text": "text_emb", "image": "image_emb", "geo": "geo_emb", "cf": "cf_emb"}

Batch = Union[pa.RecordBatch, pa.Table]


def view_column(view: str) -> str:
    try:
        return VIEW_COLUMNS[view]
    except KeyError:
        raise ValueError(f"unknown view {view!r}; known: {sorted(VIEW_COLUMNS)}") from None


def _array(batch: Batch, name: str) -> pa.Array:
    col = batch.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def to_view_batch(batch: Batch, view_dims: Mapping[str, int]) -> ViewBatch:
    """One ViewBatch from Arrow rows holding the views' embedding columns."""
    n = batch.num_rows
    features, present = {}, {}
    for view, dim in view_dims.items():
        col = _array(batch, view_column(view))
        valid = np.array(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        x = np.zeros((n, dim), dtype=np.float32)
        n_valid = int(valid.sum())
        if n_valid:
            kept = col.filter(pa.array(valid)) if n_valid < n else col
            lengths = pc.list_value_length(kept).to_numpy(zero_copy_only=False)
            if not bool((lengths == dim).all()):
                bad = sorted(set(lengths[lengths != dim].tolist()))[:5]
                raise ValueError(f"view {view!r} ({view_column(view)}): expected {dim}-d embeddings, "
                                 f"found lengths {bad}")
            x[valid] = kept.flatten().to_numpy(zero_copy_only=False).reshape(n_valid, dim)
            finite = np.isfinite(x).all(axis=1)
            if not finite.all():  # a NaN / inf embedding is unusable: treat it as missing
                valid &= finite
                x[~finite] = 0.0
        features[view] = torch.from_numpy(x)
        present[view] = torch.from_numpy(valid)
    return ViewBatch(features, present)


def has_any_view(batch: Batch, views: Sequence[str]) -> np.ndarray:
    """Bool [n]: the item has at least one of ``views`` (non-null)."""
    mask = np.zeros(batch.num_rows, dtype=bool)
    for view in views:
        mask |= _array(batch, view_column(view)).is_valid().to_numpy(zero_copy_only=False)
    return mask


def select_items(batch: pa.Table, *, part: str, views: Sequence[str], valid_fraction: float) -> pa.Table:
    """Rows of ``part`` ("train" | "valid") that have at least one of ``views``.
    A Ray Data ``map_batches`` function (pyarrow batch format)."""
    if part not in ("train", "valid"):
        raise ValueError(f"part must be 'train' or 'valid', got {part!r}")
    in_valid = valid_mask(batch.column("item_id"), valid_fraction)
    keep = (in_valid if part == "valid" else ~in_valid) & has_any_view(batch, views)
    return batch.filter(pa.array(keep))


def select_sample(batch: pa.Table, *, fraction: float, seed: int) -> pa.Table:
    """Rows in the seed's sample (a pure function of the item id: see ``item_split``).
    A Ray Data ``map_batches`` function (pyarrow batch format)."""
    return batch.filter(pa.array(sample_mask(batch.column("item_id"), fraction, seed)))


def sample_view_batch(row_batches, view_dims: Mapping[str, int]) -> tuple[ViewBatch, int]:
    """(ViewBatch, rows) of a sample's Arrow batches in item-id order: k-means++ seeding and
    Lloyd's updates depend on row order, and Ray Data does not fix the order of a stream."""
    batches = [b for b in row_batches if b.num_rows]
    if not batches:
        return ViewBatch({v: torch.zeros(0, d) for v, d in view_dims.items()},
                         {v: torch.zeros(0, dtype=torch.bool) for v in view_dims}), 0
    table = pa.Table.from_batches(batches) if isinstance(batches[0], pa.RecordBatch) else pa.concat_tables(batches)
    table = table.sort_by("item_id")
    return to_view_batch(table, view_dims), table.num_rows


def infer_view_dims(dataset: ds.Dataset, views: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Embedding dim of each view from its first non-null value. Returns (dims of the views that
    hold data, views whose column is entirely null)."""
    dims: dict[str, int] = {}
    empty: list[str] = []
    for view in views:
        col = view_column(view)
        scanner = dataset.scanner(columns=[col], filter=pc.field(col).is_valid(), batch_size=1024)
        for batch in scanner.to_batches():
            if batch.num_rows:
                dims[view] = int(pc.list_value_length(batch.column(0))[0].as_py())
                break
        else:
            empty.append(view)
    return dims, empty
