"""Batch tokenizer inference inside Spark: ``item_features`` -> base codes (L ints per item).

Spark schedules one task per Parquet row group of the table's current version; the task's Python
worker reads that row group itself with pyarrow (only ``item_id`` and the model's view columns),
runs the tokenizer (loaded once per worker process, cached by model directory) on whole Arrow
batches, and hands back only ``item_id`` + codes.

Why not ``spark.read.parquet(...).mapInArrow(...)``: then the JVM decodes every embedding
(~2 KB per item) and re-encodes it to Arrow value by value for the Python worker; at 1M items that
conversion, not the model, was most of the stage (assign-ids at 39% of the bare forward pass,
benchmarks/RESULTS.md §2). Reading the files in the worker keeps the embeddings in Arrow end to
end. The file list comes from the Delta log (``Lake.file_uris``): the table is written by our own
stages (no deletion vectors, no column mapping), so its Parquet files are exactly its rows.
"""
from __future__ import annotations

from functools import lru_cache

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

SCHEMA = T.StructType(
    [
        T.StructField("item_id", T.StringType()),
        T.StructField("base", T.ArrayType(T.IntegerType())),
        T.StructField("has_view", T.BooleanType()),
    ]
)


@lru_cache(maxsize=2)
def _model(model_dir: str):
    from simcit.train.model_store import load_tokenizer

    return load_tokenizer(model_dir, verify=False)


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


def code_batch(batch, model, views: dict, levels: int):
    """One Arrow batch (item_id + view columns) -> (item_id, base codes or null, has_view)."""
    import numpy as np
    import pyarrow as pa
    import torch

    from simcit.train.view_batches import has_any_view, to_view_batch

    n = batch.num_rows
    usable = has_any_view(batch, list(views))
    codes = np.zeros((n, levels), dtype=np.int32)
    if usable.any():
        sub = batch.filter(pa.array(usable)) if not usable.all() else batch
        with torch.inference_mode():
            codes[usable] = model.codes(to_view_batch(sub, views)).numpy().astype(np.int32)
    # one list of L codes per usable row, null otherwise: built from flat buffers
    offsets = pa.array(np.concatenate([[0], np.cumsum(usable.astype(np.int32) * levels)]).astype(np.int32))
    base = pa.ListArray.from_arrays(offsets, pa.array(codes[usable].ravel()), mask=pa.array(~usable))
    return pa.RecordBatch.from_arrays([batch.column("item_id"), base, pa.array(usable)],
                                      names=["item_id", "base", "has_view"])


def base_codes(spark: SparkSession, file_uris: list[str], model_dir: str, view_columns: list[str],
               batch_rows: int) -> DataFrame:
    """(item_id, base codes or null, has_view) for every row of the Parquet files ``file_uris``;
    only ``item_id`` and the model's ``view_columns`` are read (an image column the model does not
    use is 5 KB per row). One Spark task per row group, largest first (balanced slots)."""
    tasks = [(u, g) for u, g, _ in sorted(row_group_tasks(file_uris), key=lambda t: -t[2])]
    columns = ["item_id", *view_columns]

    def infer(task_batches):
        from simcit.features.worker_threads import configure_torch_threads

        configure_torch_threads()
        model, meta = _model(model_dir)
        views, levels = dict(meta["views"]), int(meta["levels"])
        for tb in task_batches:
            for task in tb.column("id").to_pylist():
                uri, group = tasks[task]
                for batch in _open(uri).iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
                    if batch.num_rows:
                        yield code_batch(batch, model, views, levels)

    # Task i = row group i, exactly one per partition; the (small) task list travels in the closure.
    n = max(len(tasks), 1)
    return spark.range(0, len(tasks), 1, n).mapInArrow(infer, SCHEMA)
