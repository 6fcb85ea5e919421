"""image view: EfficientNet-Lite0 embeddings of ``items.image_uri`` (null where no image).

An image that cannot be read leaves ``image_emb`` null and produces a rejects row
(source ``features.image``) with the reason, so nothing fails silently.
"""
from __future__ import annotations

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from simcit.config import ImageViewConfig

SCHEMA = T.StructType(
    [
        T.StructField("item_id", T.StringType()),
        T.StructField("image_emb", T.ArrayType(T.FloatType())),
        T.StructField("image_error", T.StringType()),
        T.StructField("image_uri", T.StringType()),
    ]
)


def image_embeddings(items: DataFrame, cfg: ImageViewConfig, partitions: int) -> DataFrame:
    size, batch_size = cfg.image_size, cfg.batch_size

    def embed_batches(batches):
        from simcit.encoders import image_encoder
        from simcit.features.worker_threads import configure_torch_threads

        configure_torch_threads()
        for pdf in batches:
            embs, errors = image_encoder.embed_uris(pdf["image_uri"].tolist(), size, batch_size)
            yield pd.DataFrame(
                {"item_id": pdf["item_id"].to_numpy(), "image_emb": embs, "image_error": errors,
                 "image_uri": pdf["image_uri"].to_numpy()}
            )

    with_image = items.where(F.col("image_uri").isNotNull()).select("item_id", "image_uri")
    return with_image.repartition(partitions).mapInPandas(embed_batches, SCHEMA)
