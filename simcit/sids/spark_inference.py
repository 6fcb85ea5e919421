"""Batch tokenizer inference inside Spark: ``item_features`` -> base codes (L ints per item).

``mapInArrow`` hands each Python worker Arrow record batches; the tokenizer is loaded once per
worker process (cached by model directory) and applied to whole batches, never row by row.
"""
from __future__ import annotations

from functools import lru_cache

from pyspark.sql import DataFrame
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


def base_codes(features: DataFrame, model_dir: str, partitions: int, view_columns: list[str]) -> DataFrame:
    """(item_id, base codes or null, has_view) for every row of ``features``; only the model's
    ``view_columns`` are read (an image column the model does not use is 5 KB per row)."""

    def infer(batches):
        import numpy as np
        import pyarrow as pa
        import torch

        from simcit.features.worker_threads import configure_torch_threads
        from simcit.train.view_batches import has_any_view, to_view_batch

        configure_torch_threads()
        model, meta = _model(model_dir)
        views = dict(meta["views"])
        levels = int(meta["levels"])
        for batch in batches:
            n = batch.num_rows
            if n == 0:
                continue
            usable = has_any_view(batch, list(views))
            codes = np.zeros((n, levels), dtype=np.int32)
            if usable.any():
                sub = batch.filter(pa.array(usable)) if not usable.all() else batch
                with torch.inference_mode():
                    codes[usable] = model.codes(to_view_batch(sub, views)).numpy().astype(np.int32)
            # one list of L codes per usable row, null otherwise: built from flat buffers
            offsets = pa.array(np.concatenate([[0], np.cumsum(usable.astype(np.int32) * levels)]).astype(np.int32))
            base = pa.ListArray.from_arrays(offsets, pa.array(codes[usable].ravel()), mask=pa.array(~usable))
            yield pa.RecordBatch.from_arrays([batch.column("item_id"), base, pa.array(usable)], names=["item_id", "base", "has_view"])

    selected = features.select("item_id", *view_columns)
    # Spread inference over the cores only when the table has fewer splits than that: a
    # repartition shuffles every embedding through disk (~2 GB per million items).
    if selected.rdd.getNumPartitions() < partitions:
        selected = selected.repartition(partitions)
    return selected.mapInArrow(infer, SCHEMA)
