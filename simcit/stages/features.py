"""features: ``items`` + training interactions -> ``item_features`` (text, image, geo, cf, H3).

Views learned from interactions (cf, mobility edges of geo) read the training part only
(:func:`simcit.splits.training_interactions`), through one per-user pass that counts both kinds
of pairs (:mod:`simcit.features.interaction_pairs`). The graph views run on dense int64 node
ids (:mod:`simcit.features.node_index`), joined back to item ids only for the embedding rows.
Encoders run inside Python workers, loaded once per worker and applied per Arrow batch. The geo
and cf factorisations are distributed (see :mod:`simcit.features.distributed_eigen`); the
driver only ever holds k x k matrices.
"""
from __future__ import annotations

import time

from pyspark import StorageLevel
from pyspark.sql import functions as F
from pyspark.sql import types as T

from simcit.features.cf_graph import cf_embeddings
from simcit.features.geo_graph import geo_embeddings
from simcit.features.h3_view import TABLE_RESOLUTIONS, poi_cells
from simcit.features.image_view import image_embeddings
from simcit.features.interaction_pairs import interaction_pair_counts
from simcit.features.node_index import dense_index
from simcit.features.text_view import text_embeddings
from simcit.splits import training_interactions
from simcit.stages.runtime import StageContext, StageSummary

EMB = T.ArrayType(T.FloatType())


def run(ctx: StageContext) -> StageSummary:
    spark, lake, fcfg = ctx.spark, ctx.lake, ctx.cfg.features
    items_version, inter_version = lake.version("items"), lake.version("interactions")
    items = spark.read.parquet(*lake.file_uris("items")).persist(StorageLevel.MEMORY_AND_DISK)
    n_items = items.count()
    parallelism = spark.sparkContext.defaultParallelism
    partitions = max(parallelism, min(4 * parallelism, n_items // 2000 + 1))
    ctx.log(f"items v{items_version}: {n_items:,} rows, {partitions} partitions; interactions v{inter_version}")
    timings: dict[str, float] = {}
    out = items.select("item_id")
    temp = []

    geo_cfg, cf_cfg = fcfg.geo, fcfg.cf
    cells = poi_cells(
        items, geo_cfg.ring_resolution, geo_cfg.ring_k, geo_cfg.cell_resolutions, geo_cfg.region_resolution
    )
    cells = cells.persist(StorageLevel.MEMORY_AND_DISK)
    temp.append(cells)
    n_located = cells.count()
    out = out.join(cells.select("item_id", *[f"h3_r{r}" for r in TABLE_RESOLUTIONS]), "item_id", "left")
    ctx.log(f"H3 cells: {n_located:,} items with coordinates")

    use_mobility = geo_cfg.enabled and geo_cfg.mobility_weight > 0
    index = pairs = None
    if cf_cfg.enabled or geo_cfg.enabled:
        t = time.time()
        # Items numbered by H3 cell, then id: nearby POIs get nearby node ids (see node_index).
        located = items.select("item_id").join(cells.select("item_id", "cell"), "item_id", "left")
        index, _ = dense_index(located, "item_id", order_by="cell")
        index = index.persist(StorageLevel.MEMORY_AND_DISK)
        temp.append(index)
        timings["index_s"] = time.time() - t
    if cf_cfg.enabled or use_mobility:
        t = time.time()
        inter = spark.read.parquet(*lake.file_uris("interactions"))
        train = training_interactions(inter, ctx.cfg.sequences.collapse_repeats)
        pairs = interaction_pair_counts(
            train,
            index,
            cf_cfg.window if cf_cfg.enabled else 0,
            geo_cfg.mobility_max_gap_hours * 3600.0 if use_mobility else None,
        ).persist(StorageLevel.MEMORY_AND_DISK)
        temp.append(pairs)
        n_pairs = pairs.count()
        timings["pairs_s"] = time.time() - t
        ctx.log(f"training-part pairs (cf window + mobility): {n_pairs:,} item pairs in {timings['pairs_s']:.1f}s")

    if geo_cfg.enabled and n_located > 1:
        t = time.time()
        geo = geo_embeddings(cells, index, pairs, geo_cfg, ctx.log).localCheckpoint(eager=True)
        timings["geo_s"] = time.time() - t
        ctx.log(f"geo view: {geo.count():,} embeddings in {timings['geo_s']:.1f}s")
        out = out.join(geo, "item_id", "left")
    else:
        out = out.withColumn("geo_emb", F.lit(None).cast(EMB))

    if cf_cfg.enabled:
        t = time.time()
        cf = cf_embeddings(pairs, index, cf_cfg, ctx.log).localCheckpoint(eager=True)
        timings["cf_s"] = time.time() - t
        ctx.log(f"cf view: {cf.count():,} embeddings in {timings['cf_s']:.1f}s")
        out = out.join(cf, "item_id", "left")
    else:
        out = out.withColumn("cf_emb", F.lit(None).cast(EMB))

    image_rejects = None
    if fcfg.image.enabled and items.where(F.col("image_uri").isNotNull()).limit(1).count():
        t = time.time()
        images = image_embeddings(items, fcfg.image, partitions).localCheckpoint(eager=True)
        timings["image_s"] = time.time() - t
        ctx.log(f"image view: {images.where(F.col('image_emb').isNotNull()).count():,} embeddings in {timings['image_s']:.1f}s")
        out = out.join(images.select("item_id", "image_emb"), "item_id", "left")
        image_rejects = images.where(F.col("image_error").isNotNull()).select(
            F.lit("features.image").alias("source"),
            F.col("image_error").alias("reason"),
            F.to_json(F.struct("item_id", "image_uri")).alias("record"),
            F.lit(None).cast("long").alias("source_row"),
            F.lit(ctx.run_id).alias("run_id"),
        )
    else:
        out = out.withColumn("image_emb", F.lit(None).cast(EMB))

    # The text view runs last, inside the final write, so encoding streams straight to Parquet.
    if fcfg.text.enabled:
        out = out.join(text_embeddings(items, fcfg.text, partitions), "item_id", "left")
    else:
        out = out.withColumn("text_emb", F.lit(None).cast(EMB))

    staging = lake.new_staging_dir("item_features", ctx.run_id)
    ctx.log(f"encoding text and writing item_features ({n_items:,} items)")
    t = time.time()
    out.select("item_id", "text_emb", "image_emb", "geo_emb", "cf_emb", "h3_r7", "h3_r8", "h3_r9").write.parquet(
        staging
    )
    timings["text_and_write_s"] = time.time() - t
    lake.clear_stale_staging("item_features", keep=staging)
    result = lake.commit_parquet(
        "item_features",
        staging,
        metadata={
            "simcit.run_id": ctx.run_id,
            "simcit.items_version": str(items_version),
            "simcit.interactions_version": str(inter_version),
        },
    )
    versions = {"item_features": result.version}
    n_rejected = 0
    if image_rejects is not None:
        rej_stage = lake.new_staging_dir("rejects", ctx.run_id)
        image_rejects.write.parquet(rej_stage)
        n_rejected = spark.read.parquet(rej_stage).count()
        if n_rejected:
            versions["rejects"] = lake.commit_parquet("rejects", rej_stage, mode="append").version
    coverage = _coverage(spark, lake)
    for df in [items, *temp]:
        df.unpersist()
    return ctx.summary(
        rows_in=n_items,
        rows_out=result.rows,
        rows_rejected=n_rejected,
        versions=versions,
        extra={**coverage, **{k: f"{v:.1f}" for k, v in timings.items()}},
    )


def _coverage(spark, lake) -> dict[str, str]:
    """Non-null count per view of the committed table, as one Spark aggregate: only four counts
    reach the driver (streaming the embeddings through the driver made its memory grow with the
    catalogue: 1.5 GB at 200k items, Arrow read-ahead of 2 KB rows)."""
    cols = ["text_emb", "image_emb", "geo_emb", "cf_emb"]
    row = spark.read.parquet(*lake.file_uris("item_features")).agg(*[F.count(c).alias(c) for c in cols]).first()
    return {c.replace("_emb", ""): f"{int(row[c]):,}" for c in cols}
