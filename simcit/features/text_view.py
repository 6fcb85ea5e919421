"""text view: MiniLM embeddings of ``items.text``, batched per Arrow batch in Python workers."""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from simcit.config import TextViewConfig

SCHEMA = T.StructType(
    [T.StructField("item_id", T.StringType()), T.StructField("text_emb", T.ArrayType(T.FloatType()))]
)


def text_embeddings(items: DataFrame, cfg: TextViewConfig, partitions: int) -> DataFrame:
    batch_size, max_len = cfg.batch_size, cfg.max_seq_length

    def encode_batches(batches):
        from simcit.encoders import text_encoder
        from simcit.features.worker_threads import configure_torch_threads

        configure_torch_threads()
        for pdf in batches:
            texts = pdf["text"].fillna("").tolist()
            has_text = [bool(t.strip()) for t in texts]
            embs = [None] * len(texts)
            to_encode = [t for t, ok in zip(texts, has_text) if ok]
            if to_encode:
                out = text_encoder.encode(to_encode, batch_size, max_len)
                it = iter(out)
                embs = [next(it) if ok else None for ok in has_text]
            yield pd.DataFrame({"item_id": pdf["item_id"].to_numpy(), "text_emb": embs})

    # Spread the encoding evenly over every task slot.
    return items.select("item_id", "text").repartition(partitions).mapInPandas(encode_batches, SCHEMA)
