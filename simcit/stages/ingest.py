"""ingest: raw item and interaction files -> ``items``, ``interactions`` and ``rejects``.

Every raw row ends in exactly one place: a kept table or ``rejects`` with its reason. The job
checks ``rows read == rows kept + rows rejected`` per source before committing anything.
Rules are native Spark expressions (no Python UDFs), evaluated once on a persisted frame.
"""
from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from simcit.raw_input import CORRUPT, SOURCE_ROW, raw_columns, read_raw, record_json, require_columns
from simcit.stages.runtime import StageContext, StageSummary
from simcit.text_template import text_expression, validate_template

REASON = "__reason"


class ReconciliationError(RuntimeError):
    pass


def _blank(c: Column) -> Column:
    return c.isNull() | (F.trim(c) == "")


def _first_failure(rules: list[tuple[Column, str]]) -> Column:
    """The reason of the first rule that fails, or null when the row passes all of them."""
    expr = F.lit(None).cast("string")
    for failed, reason in reversed(rules):
        expr = F.when(failed, F.lit(reason) if isinstance(reason, str) else reason).otherwise(expr)
    return expr


def validate_items(ctx: StageContext, raw: DataFrame) -> DataFrame:
    """Raw items + ``_reason`` (null for valid rows) + canonical columns."""
    ds = ctx.cfg.dataset
    cols = ds.item_columns
    require_columns(
        raw,
        {
            "dataset.item_columns.item_id": cols.item_id,
            "dataset.item_columns.latitude": cols.latitude,
            "dataset.item_columns.longitude": cols.longitude,
            "dataset.item_columns.image_uri": cols.image_uri,
            **{f"dataset.item_columns.keep[{i}]": c for i, c in enumerate(cols.keep)},
        },
        "items",
    )
    validate_template(ds.text_template, raw.columns)
    if (cols.latitude is None) != (cols.longitude is None):
        raise ValueError("dataset.item_columns: set both latitude and longitude, or neither")

    item_id = F.trim(F.col(cols.item_id))
    df = raw.withColumn("__item_id", item_id)
    rules: list[tuple[Column, str]] = [
        (F.col(CORRUPT).isNotNull(), "malformed row (wrong number of fields)"),
        (_blank(F.col(cols.item_id)), "missing item_id"),
    ]
    if cols.latitude is not None:
        lat_raw, lon_raw = F.col(cols.latitude), F.col(cols.longitude)
        lat = F.expr(f"try_cast(`{cols.latitude}` AS DOUBLE)")
        lon = F.expr(f"try_cast(`{cols.longitude}` AS DOUBLE)")
        has_lat, has_lon = ~_blank(lat_raw), ~_blank(lon_raw)
        df = df.withColumn("__lat", F.when(has_lat, lat)).withColumn("__lon", F.when(has_lon, lon))
        lat_c, lon_c = F.col("__lat"), F.col("__lon")
        rules += [
            (has_lat != has_lon, "only one of latitude/longitude given"),
            ((has_lat & lat_c.isNull()) | (has_lon & lon_c.isNull()), "unparseable coordinate"),
            (F.isnan(lat_c) | F.isnan(lon_c), "unparseable coordinate"),
            ((F.abs(lat_c) > 90) | (F.abs(lon_c) > 180), "coordinates out of range"),
            ((lat_c == 0) & (lon_c == 0), "coordinates exactly (0, 0)"),
        ]
    else:
        df = df.withColumn("__lat", F.lit(None).cast("double")).withColumn("__lon", F.lit(None).cast("double"))
    df = df.withColumn(REASON, _first_failure(rules))

    # Duplicates among otherwise valid rows: the first in file order is kept, later ones rejected.
    from pyspark.sql.window import Window

    w = Window.partitionBy("__item_id").orderBy(SOURCE_ROW)
    first_row = F.first(SOURCE_ROW).over(w)
    dup_rank = F.row_number().over(w)
    valid = df.where(F.col(REASON).isNull())
    valid = valid.withColumn(
        REASON,
        F.when(
            dup_rank > 1,
            F.concat(F.lit("duplicate item_id (first kept at source row "), first_row.cast("string"), F.lit(")")),
        ),
    )
    df = df.where(F.col(REASON).isNotNull()).unionByName(valid)

    image = F.lit(None).cast("string")
    if cols.image_uri is not None:
        base = ctx.cfg.resolve(ds.items).rsplit("/", 1)[0]
        raw_uri = F.trim(F.col(cols.image_uri))
        image = F.when(_blank(F.col(cols.image_uri)), None).otherwise(
            F.when(raw_uri.startswith("/") | raw_uri.contains("://"), raw_uri).otherwise(
                F.concat(F.lit(base + "/"), raw_uri)
            )
        )
    attributes = (
        F.create_map(*[x for c in cols.keep for x in (F.lit(c), F.col(c))])
        if cols.keep
        else F.create_map().cast("map<string,string>")
    )
    return (
        df.withColumn("__text", text_expression(ds.text_template, ds.text_separator))
        .withColumn("__image", image)
        .withColumn("__attrs", attributes)
    )


def _timestamp(col: str, fmt: str) -> Column:
    c = f"`{col}`"
    if fmt == "unix_seconds":
        return F.expr(f"timestamp_micros(CAST(round(try_cast({c} AS DOUBLE) * 1000000) AS BIGINT))")
    if fmt == "unix_millis":
        return F.expr(f"timestamp_micros(CAST(round(try_cast({c} AS DOUBLE) * 1000) AS BIGINT))")
    if fmt == "ordinal":
        return F.expr(f"timestamp_seconds(try_cast({c} AS BIGINT))")
    return F.expr(f"try_to_timestamp({c})")


def validate_interactions(ctx: StageContext, raw: DataFrame, valid_items: DataFrame) -> DataFrame:
    cols = ctx.cfg.dataset.interaction_columns
    require_columns(
        raw,
        {
            "dataset.interaction_columns.user_id": cols.user_id,
            "dataset.interaction_columns.item_id": cols.item_id,
            "dataset.interaction_columns.ts": cols.ts,
        },
        "interactions",
    )
    known = valid_items.select(F.col("__item_id").alias("__known_item"), F.lit(True).alias("__is_known"))
    df = (
        raw.withColumn("__user", F.trim(F.col(cols.user_id)))
        .withColumn("__item_id", F.trim(F.col(cols.item_id)))
        .withColumn("__ts", _timestamp(cols.ts, cols.ts_format))
        .join(known, F.col("__item_id") == F.col("__known_item"), "left")
    )
    rules = [
        (F.col(CORRUPT).isNotNull(), "malformed row (wrong number of fields)"),
        (_blank(F.col(cols.user_id)), "missing user_id"),
        (_blank(F.col(cols.item_id)), "missing item_id"),
        (F.col("__ts").isNull(), F.concat(F.lit(f"unparseable timestamp ({cols.ts_format}): "), F.coalesce(F.col(cols.ts), F.lit("null")))),
        (F.col("__is_known").isNull(), "unknown item_id (not in valid items)"),
    ]
    return df.withColumn(REASON, _first_failure(rules))


def _rejects(df: DataFrame, source: str, raw_columns: list[str], run_id: str) -> DataFrame:
    return df.where(F.col(REASON).isNotNull()).select(
        F.lit(source).alias("source"),
        F.col(REASON).alias("reason"),
        record_json(df, raw_columns).alias("record"),
        F.col(SOURCE_ROW).alias("source_row"),
        F.lit(run_id).alias("run_id"),
    )


def run(ctx: StageContext) -> StageSummary:
    spark, lake, ds = ctx.spark, ctx.lake, ctx.cfg.dataset
    items_path, inter_path = ctx.cfg.resolve(ds.items), ctx.cfg.resolve(ds.interactions)
    ctx.log(f"reading items {items_path}")
    raw_items = read_raw(spark, items_path, ds.csv_delimiter)
    item_raw_cols = raw_columns(raw_items)
    items = validate_items(ctx, raw_items).persist(StorageLevel.MEMORY_AND_DISK)
    kept_items = items.where(F.col(REASON).isNull())

    ctx.log(f"reading interactions {inter_path}")
    raw_inter = read_raw(spark, inter_path, ds.csv_delimiter)
    inter_raw_cols = raw_columns(raw_inter)
    inter = validate_interactions(ctx, raw_inter, kept_items).persist(StorageLevel.MEMORY_AND_DISK)

    counts = {}
    for name, df in (("items", items), ("interactions", inter)):
        row = df.agg(F.count(F.lit(1)).alias("n"), F.count(REASON).alias("rejected")).first()
        counts[name] = (row["n"], row["n"] - row["rejected"], row["rejected"])
        ctx.log(f"{name}: read={row['n']:,} kept={row['n'] - row['rejected']:,} rejected={row['rejected']:,}")
    raw_counts = {"items": raw_items.count(), "interactions": raw_inter.count()}

    staging = {t: lake.new_staging_dir(t, ctx.run_id) for t in ("items", "interactions", "rejects")}
    ctx.log("writing items / interactions / rejects (Parquet staging)")
    kept_items.select(
        F.col("__item_id").alias("item_id"),
        F.col("__text").alias("text"),
        F.col("__lat").alias("latitude"),
        F.col("__lon").alias("longitude"),
        F.col("__image").alias("image_uri"),
        F.col("__attrs").alias("attributes"),
    ).write.parquet(
        staging["items"]
    )
    inter.where(F.col(REASON).isNull()).select(
        F.col("__user").alias("user_id"),
        F.col("__item_id").alias("item_id"),
        F.col("__ts").alias("ts"),
        F.col(SOURCE_ROW).alias("seq_no"),
    ).write.parquet(
        staging["interactions"]
    )
    _rejects(items, "items", item_raw_cols, ctx.run_id).unionByName(
        _rejects(inter, "interactions", inter_raw_cols, ctx.run_id)
    ).write.parquet(staging["rejects"])

    # Reconcile from what was actually written, before any commit: read = kept + rejected.
    written = {t: _parquet_rows(spark, p) for t, p in staging.items()}
    rejected_by_source = {
        r["source"]: r["count"]
        for r in spark.read.parquet(staging["rejects"]).groupBy("source").count().collect()
    }
    for source in ("items", "interactions"):
        read, kept, rejected = raw_counts[source], written[source], rejected_by_source.get(source, 0)
        if read != kept + rejected:
            raise ReconciliationError(f"{source}: read {read} != kept {kept} + rejected {rejected}; nothing committed")

    versions = {}
    for table in ("items", "interactions", "rejects"):
        lake.clear_stale_staging(table, keep=staging[table])
        versions[table] = lake.commit_parquet(table, staging[table], metadata={"simcit.run_id": ctx.run_id}).version
    items.unpersist()
    inter.unpersist()
    rows_in = raw_counts["items"] + raw_counts["interactions"]
    return ctx.summary(
        rows_in=rows_in,
        rows_out=written["items"] + written["interactions"],
        rows_rejected=written["rejects"],
        versions=versions,
        extra={
            "kept_items": f"{written['items']:,}/{raw_counts['items']:,}",
            "kept_interactions": f"{written['interactions']:,}/{raw_counts['interactions']:,}",
        },
    )


def _parquet_rows(spark, path: str) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(path, format="parquet").count_rows()
