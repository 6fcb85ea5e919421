"""assign-ids: ``item_features`` + a trained tokenizer -> ``semantic_ids`` (versioned, stable,
collision-free), plus code-quality figures written beside the model.

Inference runs in Spark Python workers (model loaded once per worker, Arrow batches); collision
resolution is a Spark window over the base codes. With the same tokenizer version as the table
already holds, existing rows are kept byte for byte and only new items get new SIDs.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import time

import numpy as np
from pyspark.sql import functions as F

from simcit.sids.code_quality import level_figures
from simcit.sids.collisions import assign
from simcit.sids.spark_inference import base_codes
from simcit.stages.runtime import StageContext, StageSummary
from simcit.train.view_batches import VIEW_COLUMNS


def table_name(ctx: StageContext) -> str:
    tag = ctx.cfg.assign_ids.table_tag
    return "semantic_ids" if not tag else f"semantic_ids__{tag}"


def resolve_model_dir(ctx: StageContext) -> str:
    from simcit.train.model_store import latest_tokenizer_dir

    configured = ctx.cfg.assign_ids.model_dir
    return ctx.cfg.resolve(configured) if configured else latest_tokenizer_dir(ctx.lake, ctx.cfg.tokenizer.kind)


def verified_quality(table_df, levels: int, codebook_size: int, table: str = "semantic_ids") -> dict:
    """Quality figures from distributed aggregates (at most L x K rows reach the driver), and the
    uniqueness check of the table's SIDs in the same pass: a SID spells its codes, so SIDs are
    unique iff no group of equal base codes repeats a disambiguation code."""
    groups = table_df.groupBy(F.slice("codes", 1, levels).alias("base")).agg(
        F.count(F.lit(1)).alias("count"), F.countDistinct(F.element_at("codes", levels + 1)).alias("distinct"))
    groups = groups.localCheckpoint(eager=True)
    agg = groups.agg(F.count(F.lit(1)).alias("unique"), F.sum("count").alias("n"), F.max("count").alias("largest"),
                     F.sum(F.col("count") - F.col("distinct")).alias("repeated")).first()
    if agg["repeated"]:
        raise RuntimeError(f"{table}: {agg['repeated']} duplicate SIDs produced; nothing committed")
    per_level = []
    exploded = groups.select(F.posexplode("base").alias("level", "code"), "count")
    counts = {(r["level"], r["code"]): r["n"]
              for r in exploded.groupBy("level", "code").agg(F.sum("count").alias("n")).collect()}
    for level in range(levels):
        vec = np.zeros(codebook_size)
        for (lv, code), c in counts.items():
            if lv == level and 0 <= code < codebook_size:
                vec[code] = c
        per_level.append(level_figures(vec))
    n = int(agg["n"] or 0)
    return {
        "items": n,
        "unique_base_sids": int(agg["unique"] or 0),
        "unique_ratio_before_disambiguation": (agg["unique"] / n) if n else 0.0,
        "largest_collision_group": int(agg["largest"] or 0),
        "levels": per_level,
    }


def run(ctx: StageContext) -> StageSummary:
    from simcit.train.model_store import load_tokenizer

    spark, lake = ctx.spark, ctx.lake
    model_dir = resolve_model_dir(ctx)
    _, meta = load_tokenizer(model_dir)  # verifies the content hash once, on the driver
    version, levels, k = meta["tokenizer_version"], int(meta["levels"]), int(meta["codebook_size"])
    ctx.log(f"tokenizer {meta['kind']} {version} (L={levels}, K={k}, views={sorted(meta['views'])}) from {model_dir}")
    features_version = lake.version("item_features")
    n_items = lake.dataset("item_features").count_rows()  # from Parquet footers, no scan
    view_columns = [VIEW_COLUMNS[v] for v in sorted(dict(meta["views"]))]
    t0 = time.time()
    coded = base_codes(spark, lake.file_uris("item_features", features_version), model_dir, view_columns,
                       ctx.cfg.spark.arrow_batch_rows).localCheckpoint(eager=True)
    elapsed = time.time() - t0
    ctx.log(f"coded {n_items:,} items in {elapsed:.1f}s ({n_items / max(elapsed, 1e-9):,.0f} items/s)")
    no_view = coded.where(~F.col("has_view"))
    n_no_view = no_view.count()
    coded = coded.where(F.col("has_view")).select("item_id", "base")

    table = table_name(ctx)
    previous = None
    if lake.exists(table):
        prev = spark.read.parquet(*lake.file_uris(table))
        prev_versions = [r[0] for r in prev.select("tokenizer_version").distinct().limit(2).collect()]
        if prev_versions == [version]:
            previous = prev.localCheckpoint(eager=True)
            ctx.log(f"refresh: keeping the {previous.count():,} SIDs of {table} v{lake.version(table)} (same tokenizer)")
        else:
            ctx.log(f"{table} holds tokenizer {prev_versions}; assigning every SID anew for {version}")
    created_at = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    rows = assign(coded, previous, levels, version, created_at)

    staging = lake.new_staging_dir(table, ctx.run_id)
    t0 = time.time()
    rows.write.parquet(staging)
    ctx.log(f"collisions resolved and {table} staged in {time.time() - t0:.1f}s")
    t0 = time.time()
    figures = verified_quality(spark.read.parquet(staging), levels, k, table)
    ctx.log(f"uniqueness verified and quality figures computed in {time.time() - t0:.1f}s")
    lake.clear_stale_staging(table, keep=staging)
    result = lake.commit_parquet(
        table, staging,
        metadata={"simcit.run_id": ctx.run_id, "simcit.tokenizer_version": version,
                  "simcit.item_features_version": str(features_version)},
    )
    versions = {table: result.version}
    if n_no_view:
        rej = lake.new_staging_dir("rejects", ctx.run_id)
        no_view.select(
            F.lit("assign_ids").alias("source"),
            F.lit(f"item has none of the tokenizer's views {sorted(meta['views'])}").alias("reason"),
            F.to_json(F.struct("item_id")).alias("record"),
            F.lit(None).cast("long").alias("source_row"),
            F.lit(ctx.run_id).alias("run_id"),
        ).write.parquet(rej)
        versions["rejects"] = lake.commit_parquet("rejects", rej, mode="append").version

    figures.update({"table": f"{ctx.cfg.namespace}.{table}", "table_version": result.version,
                    "tokenizer_version": version, "kind": meta["kind"]})
    with open(os.path.join(model_dir, f"sid_quality-{ctx.cfg.namespace}-{table}.json"), "w") as fh:
        json.dump(figures, fh, indent=1)
    lv = " ".join(f"L{i + 1}:used={f['used_codes']}/{k},ppl={f['perplexity']:.1f},gini={f['gini']:.2f}" for i, f in enumerate(figures["levels"]))
    ctx.log(f"quality: unique before disambiguation {figures['unique_ratio_before_disambiguation']:.4f}, "
            f"largest group {figures['largest_collision_group']}, {lv}")
    return ctx.summary(
        rows_in=n_items, rows_out=result.rows, rows_rejected=n_no_view, versions=versions,
        extra={"tokenizer_version": version,
               "unique_before": f"{figures['unique_ratio_before_disambiguation']:.4f}",
               "largest_group": figures["largest_collision_group"]},
    )
