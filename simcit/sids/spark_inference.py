"""Batch tokenizer inference inside Spark: ``item_features`` -> base codes (L ints per item, packed
into one long: ``simcit.sids.base_key``).

Spark schedules one task per Parquet row group of the table's current version; the task's Python
worker reads that row group itself with pyarrow (only ``item_id`` and the model's view columns),
runs the tokenizer (loaded once per worker process, cached by model directory) on whole Arrow
batches, and hands back only ``item_id`` + the packed codes of the items that have a view.

Why not ``spark.read.parquet(...).mapInArrow(...)``: then the JVM decodes every embedding
(~2 KB per item) and re-encodes it to Arrow value by value for the Python worker; at 1M items that
conversion, not the model, was most of the stage (assign-ids at 39% of the bare forward pass,
benchmarks/RESULTS.md §2). Reading the files in the worker keeps the embeddings in Arrow end to
end. The file list comes from the Delta log (``Lake.file_uris``): the table is written by our own
stages (no deletion vectors, no column mapping), so its Parquet files are exactly its rows.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyspark.accumulators import AccumulatorParam
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

SCHEMA = T.StructType([T.StructField("item_id", T.StringType()), T.StructField("base_key", T.LongType())])


class ArraySum(AccumulatorParam):
    """A Spark accumulator of numpy arrays (per-level code counts summed over tasks)."""

    def zero(self, value):
        return np.zeros_like(value)

    def addInPlace(self, a, b):
        a += b
        return a


@lru_cache(maxsize=2)
def _model(model_dir: str):
    """The tokenizer, loaded once per worker process; its content hash is checked here, so a
    corrupted model directory fails the job before anything is committed (and the driver never
    has to import torch)."""
    from simcit.train.model_store import load_tokenizer

    return load_tokenizer(model_dir, verify=True)


def _open(uri: str):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
    return pq.ParquetFile(fs.open_input_file(path))


def row_group_tasks(file_uris: list[str]) -> list[tuple[str, int, int]]:
    """``(file, row group, rows)`` of every row group: footers only, O(files) on the driver."""
    tasks = []
    for uri in file_uris:
        meta = _open(uri).metadata
        tasks += [(uri, g, meta.row_group(g).num_rows) for g in range(meta.num_row_groups)]
    return tasks


def code_batch(batch, model, views: dict, levels: int, bits: int):
    """One Arrow batch (item_id + view columns) -> ((item_id, packed base codes) of the rows that
    have at least one of ``views``, their [n, L] codes, how many rows had none)."""
    import pyarrow as pa
    import torch

    from simcit.sids.base_key import pack
    from simcit.train.view_batches import has_any_view, to_view_batch

    usable = has_any_view(batch, list(views))
    sub = batch if usable.all() else batch.filter(pa.array(usable))
    codes = np.zeros((0, levels), dtype=np.int64)
    if sub.num_rows:
        with torch.inference_mode():
            codes = model.codes(to_view_batch(sub, views)).numpy()
    out = pa.RecordBatch.from_arrays([sub.column("item_id"), pa.array(pack(codes, bits), type=pa.int64())],
                                     names=["item_id", "base_key"])
    return out, codes, batch.num_rows - sub.num_rows


def base_codes(spark: SparkSession, row_groups: list[tuple[str, int, int]], model_dir: str,
               view_columns: list[str], batch_rows: int, no_view_counter=None, usage_counter=None) -> DataFrame:
    """(item_id, base_key) for every row of the Parquet ``row_groups`` (from :func:`row_group_tasks`)
    that has at least one of
    the model's views. Rows with none are left out and counted in ``no_view_counter``; the codes'
    per-level usage ([L, K] counts) is summed into ``usage_counter`` (Spark accumulators: a task
    re-executed after a failure may add twice). Only ``item_id`` and the model's ``view_columns``
    are read (an image column the model does not use is 5 KB per row). One Spark task per row
    group, largest first (balanced slots)."""
    tasks = [(u, g) for u, g, _ in sorted(row_groups, key=lambda t: -t[2])]
    columns = ["item_id", *view_columns]

    def infer(task_batches):
        from simcit.features.worker_threads import configure_torch_threads
        from simcit.sids.base_key import key_bits

        configure_torch_threads()
        model, meta = _model(model_dir)
        views, levels, k = dict(meta["views"]), int(meta["levels"]), int(meta["codebook_size"])
        bits = key_bits(levels, k)
        usage = np.zeros((levels, k))
        skipped = 0
        for tb in task_batches:
            for task in tb.column("id").to_pylist():
                uri, group = tasks[task]
                for batch in _open(uri).iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
                    if batch.num_rows:
                        coded, codes, none = code_batch(batch, model, views, levels, bits)
                        skipped += none
                        for level in range(levels):
                            usage[level] += np.bincount(codes[:, level], minlength=k)[:k]
                        if coded.num_rows:
                            yield coded
        if skipped and no_view_counter is not None:
            no_view_counter.add(skipped)
        if usage_counter is not None:
            usage_counter.add(usage)

    # Task i = row group i, exactly one per partition; the (small) task list travels in the closure.
    n = max(len(tasks), 1)
    return spark.range(0, len(tasks), 1, n).mapInArrow(infer, SCHEMA)
