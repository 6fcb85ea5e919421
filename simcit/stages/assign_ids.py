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
from pyspark.sql import Observation
from pyspark.sql import functions as F

from simcit.sids.base_key import code_columns, key_bits, key_of_codes
from simcit.sids.code_quality import level_figures
from simcit.sids.collisions import assign, window_partitions
from simcit.sids.spark_inference import ArraySum, base_codes, row_group_tasks
from simcit.stages.runtime import StageContext, StageSummary


def table_name(ctx: StageContext) -> str:
    tag = ctx.cfg.assign_ids.table_tag
    return "semantic_ids" if not tag else f"semantic_ids__{tag}"


def resolve_model_dir(ctx: StageContext) -> str:
    from simcit.model_pointers import latest_tokenizer_dir

    configured = ctx.cfg.assign_ids.model_dir
    return ctx.cfg.resolve(configured) if configured else latest_tokenizer_dir(ctx.lake, ctx.cfg.tokenizer.kind)


def verified_quality(table_df, levels: int, codebook_size: int, table: str = "semantic_ids") -> dict:
    """Quality figures from distributed aggregates (at most L x K rows reach the driver), and the
    uniqueness check of the table's SIDs in the same pass: a SID spells its codes, so SIDs are
    unique iff no group of equal base codes repeats a disambiguation code. Reads the written
    table's ``codes``, not the job's intermediate keys: it checks what downstream teams will read."""
    bits = key_bits(levels, codebook_size)
    groups = table_df.groupBy(key_of_codes(F.col("codes"), levels, bits).alias("base_key")).agg(
        F.count(F.lit(1)).alias("count"), F.countDistinct(F.element_at("codes", levels + 1)).alias("distinct"))
    groups = groups.localCheckpoint(eager=True)
    agg = groups.agg(F.count(F.lit(1)).alias("unique"), F.sum("count").alias("n"), F.max("count").alias("largest"),
                     F.sum(F.col("count") - F.col("distinct")).alias("repeated")).first()
    if agg["repeated"]:
        raise RuntimeError(f"{table}: {agg['repeated']} duplicate SIDs produced; nothing committed")
    levels_df = groups.select(F.posexplode(F.array(*code_columns(F.col("base_key"), levels, bits))).alias("level", "code"),
                              "count")
    counts = np.zeros((levels, codebook_size))
    for r in levels_df.groupBy("level", "code").agg(F.sum("count").alias("n")).collect():
        if 0 <= r["code"] < codebook_size:
            counts[r["level"], r["code"]] = r["n"]
    n = int(agg["n"] or 0)
    return {
        "items": n,
        "unique_base_sids": int(agg["unique"] or 0),
        "unique_ratio_before_disambiguation": (agg["unique"] / n) if n else 0.0,
        "largest_collision_group": int(agg["largest"] or 0),
        "levels": [level_figures(counts[level]) for level in range(levels)],
    }


def _read_meta(model_dir: str) -> dict:
    """The model's config.json. Its content hash is checked by every Spark worker that loads the
    model (``spark_inference._model``): the driver never imports torch."""
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: not a tokenizer model directory") from None


def observed_quality(observed: dict, usage: np.ndarray) -> dict:
    """Quality figures of a fresh assignment from what the write observed (``n``, ``first`` =
    rows with disambiguation code 0 = distinct base codes, ``last`` = largest code) and the
    workers' per-level code counts. Fresh SIDs are unique by construction: a group's codes are
    its row numbers."""
    n = int(observed.get("n") or 0)
    unique = int(observed.get("first") or 0)
    return {
        "items": n,
        "unique_base_sids": unique,
        "unique_ratio_before_disambiguation": unique / n if n else 0.0,
        "largest_collision_group": int(observed["last"]) + 1 if observed.get("last") is not None else 0,
        "levels": [level_figures(usage[level]) for level in range(usage.shape[0])],
    }


def run(ctx: StageContext) -> StageSummary:
    lake = ctx.lake
    model_dir = resolve_model_dir(ctx)
    meta = _read_meta(model_dir)
    version, levels, k = meta["tokenizer_version"], int(meta["levels"]), int(meta["codebook_size"])
    bits = key_bits(levels, k)
    spark = ctx.spark
    ctx.log(f"tokenizer {meta['kind']} {version} (L={levels}, K={k}, views={sorted(meta['views'])}) from {model_dir}")
    features = lake.table("item_features")  # one read of the Delta log: version + files
    features_version, feature_files = features.version(), features.file_uris()
    tasks = row_group_tasks(feature_files)  # Parquet footers only
    n_items = sum(rows for _, _, rows in tasks)
    view_columns = [meta["view_columns"][v] for v in sorted(dict(meta["views"]))]
    no_view_counter = spark.sparkContext.accumulator(0)
    usage_counter = spark.sparkContext.accumulator(np.zeros((levels, k)), ArraySum())
    coded = base_codes(spark, tasks, model_dir, view_columns, ctx.cfg.spark.arrow_batch_rows,
                       no_view_counter, usage_counter)

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
    rows = assign(coded, previous, levels, bits, version, created_at,
                  partitions=window_partitions(n_items, spark.sparkContext.defaultParallelism))
    # A fresh table's figures are observed while it is written (no second pass); a refresh merges
    # kept and new rows, so its staged table is read back and checked (verified_quality).
    observation = Observation("semantic_ids")
    if previous is None:
        d = F.element_at("codes", levels + 1)
        rows = rows.observe(observation, F.count(F.lit(1)).alias("n"),
                            F.sum(F.when(d == 0, 1).otherwise(0)).alias("first"), F.max(d).alias("last"))

    # One pass from the item features to the staged table: the workers' codes stream straight
    # into the collision window's shuffle (nothing is checkpointed in between).
    staging = lake.new_staging_dir(table, ctx.run_id)
    t0 = time.time()
    try:
        rows.write.parquet(staging)
    except Exception as err:  # a worker refused the model: say so without the Spark stack
        if "content hash" in str(err):
            raise ValueError(f"{model_dir}: its files do not match tokenizer_version {version} "
                             "(corrupted or edited model directory); nothing committed") from None
        raise
    elapsed = time.time() - t0
    ctx.log(f"coded {n_items:,} items, resolved collisions and staged {table} in {elapsed:.1f}s "
            f"({n_items / max(elapsed, 1e-9):,.0f} items/s)")
    if previous is None:
        figures = observed_quality(observation.get, usage_counter.value)
    else:
        t0 = time.time()
        figures = verified_quality(spark.read.parquet(staging), levels, k, table)
        ctx.log(f"uniqueness verified and quality figures computed in {time.time() - t0:.1f}s")
    # Items with none of the model's views get no SID: exactly the feature rows missing from the
    # staged table (the accumulator only says whether to look; it may over-count a retried task).
    no_view = None
    if no_view_counter.value:
        feature_ids = spark.read.parquet(*feature_files).select("item_id")
        staged_ids = spark.read.parquet(staging).select("item_id")
        no_view = feature_ids.join(staged_ids, "item_id", "left_anti").localCheckpoint(eager=True)
    n_no_view = no_view.count() if no_view is not None else 0
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
