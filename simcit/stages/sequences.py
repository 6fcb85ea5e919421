"""sequences: ``interactions`` -> ``sequences`` (per user, chronological, leave-one-out).

Rows per user with n >= 3 interactions (items i_0 .. i_{n-1}):
  train: history = i_0 .. i_{n-4}, target = i_{n-3}   (history + target = the training part)
  valid: history = i_0 .. i_{n-3}, target = i_{n-2}
  test:  history = i_0 .. i_{n-2}, target = i_{n-1}
Users with n < 3 get a train row only (history = all but the last); nobody is dropped.
Histories keep the most recent ``sequences.max_history`` items, most recent last.
Built with Spark's per-user arrays (no Python UDF); a user's list is the only thing gathered.
"""
from __future__ import annotations

from pyspark.sql import functions as F

from simcit.splits import MIN_FOR_HOLDOUT, ordered
from simcit.stages.runtime import StageContext, StageSummary


def run(ctx: StageContext) -> StageSummary:
    cfg, lake, spark = ctx.cfg.sequences, ctx.lake, ctx.spark
    source_version = lake.version("interactions")
    ctx.log(f"reading interactions v{source_version}")
    inter = spark.read.parquet(*lake.file_uris("interactions"))
    rows_in = inter.count()
    df = ordered(inter, cfg.collapse_repeats)
    per_user = df.groupBy("user_id").agg(
        F.array_sort(F.collect_list(F.struct("pos", "item_id", "ts"))).alias("events"),
        F.first("n").cast("int").alias("n"),
    )
    m = cfg.max_history
    # One row per (user, split): `end` = index (0-based) of the target within the events array.
    splits = F.when(
        F.col("n") >= MIN_FOR_HOLDOUT,
        F.array(
            F.struct(F.lit("train").alias("split"), (F.col("n") - 3).alias("end")),
            F.struct(F.lit("valid").alias("split"), (F.col("n") - 2).alias("end")),
            F.struct(F.lit("test").alias("split"), (F.col("n") - 1).alias("end")),
        ),
    ).otherwise(F.array(F.struct(F.lit("train").alias("split"), (F.col("n") - 1).alias("end"))))
    rows = per_user.select("user_id", "events", F.explode(splits).alias("s")).select(
        "user_id", "events", F.col("s.split").alias("split"), F.col("s.end").alias("end")
    )
    hist = F.expr(f"slice(events, greatest(1, `end` - {m} + 1), least(`end`, {m}))")
    out = rows.select(
        "user_id",
        "split",
        F.when(F.col("end") > 0, F.transform(hist, lambda e: e["item_id"]))
        .otherwise(F.array().cast("array<string>"))
        .alias("history"),
        F.when(F.col("end") > 0, F.transform(hist, lambda e: e["ts"]))
        .otherwise(F.array().cast("array<timestamp>"))
        .alias("history_ts"),
        F.element_at("events", F.col("end") + 1)["item_id"].alias("target"),
        F.element_at("events", F.col("end") + 1)["ts"].alias("target_ts"),
    )
    staging = lake.new_staging_dir("sequences", ctx.run_id)
    ctx.log("writing sequences (Parquet staging)")
    out.write.parquet(staging)
    lake.clear_stale_staging("sequences", keep=staging)
    result = lake.commit_parquet(
        "sequences", staging, metadata={"simcit.run_id": ctx.run_id, "simcit.interactions_version": str(source_version)}
    )
    counts = {
        r["split"]: r["count"]
        for r in spark.read.parquet(*lake.file_uris("sequences")).groupBy("split").count().collect()
    }
    return ctx.summary(
        rows_in=rows_in,
        rows_out=result.rows,
        versions={"sequences": result.version},
        extra={"users": counts.get("train", 0), "valid": counts.get("valid", 0), "test": counts.get("test", 0)},
    )
