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

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

SCHEMA = T.StructType([T.StructField("item_id", T.StringType()), T.StructField("base_key", T.LongType())])


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


def code_batch(batch, model, views: dict, levels: int, bits: int):
    """One Arrow batch (item_id + view columns) -> (item_id, packed base codes) of the rows that
    have at least one of ``views``, and how many rows had none (they get no SID)."""
    import pyarrow as pa
    import torch

    from simcit.sids.base_key import pack
    from simcit.train.view_batches import has_any_view, to_view_batch

    usable = has_any_view(batch, list(views))
    sub = batch if usable.all() else batch.filter(pa.array(usable))
    with torch.inference_mode():
        codes = model.codes(to_view_batch(sub, views)).numpy() if sub.num_rows else None
    keys = pack(codes, bits) if codes is not None else []
    out = pa.RecordBatch.from_arrays([sub.column("item_id"), pa.array(keys, type=pa.int64())],
                                     names=["item_id", "base_key"])
    return out, batch.num_rows - sub.num_rows


def base_codes(spark: SparkSession, file_uris: list[str], model_dir: str, view_columns: list[str],
               batch_rows: int, no_view_counter=None) -> DataFrame:
    """(item_id, base_key) for every row of the Parquet files ``file_uris`` that has at least one of
    the model's views; rows with none are left out and counted in ``no_view_counter`` (a Spark
    accumulator: counts at least every such row once; a re-executed task may count twice).
    Only ``item_id`` and the model's ``view_columns`` are read (an image column the model does not
    use is 5 KB per row). One Spark task per row group, largest first (balanced slots)."""
    tasks = [(u, g) for u, g, _ in sorted(row_group_tasks(file_uris), key=lambda t: -t[2])]
    columns = ["item_id", *view_columns]

    def infer(task_batches):
        from simcit.features.worker_threads import configure_torch_threads
        from simcit.sids.base_key import key_bits

        configure_torch_threads()
        model, meta = _model(model_dir)
        views, levels = dict(meta["views"]), int(meta["levels"])
        bits = key_bits(levels, int(meta["codebook_size"]))
        for tb in task_batches:
            for task in tb.column("id").to_pylist():
                uri, group = tasks[task]
                for batch in _open(uri).iter_batches(batch_size=batch_rows, row_groups=[group], columns=columns):
                    if batch.num_rows:
                        coded, skipped = code_batch(batch, model, views, levels, bits)
                        if skipped and no_view_counter is not None:
                            no_view_counter.add(skipped)
                        if coded.num_rows:
                            yield coded

    # Task i = row group i, exactly one per partition; the (small) task list travels in the closure.
    n = max(len(tasks), 1)
    return spark.range(0, len(tasks), 1, n).mapInArrow(infer, SCHEMA)
