"""Read raw CSV / CSV.gz / Parquet files into Spark with every column as a string.

Types are checked by the ingest rules, not by the reader, so a bad value becomes a rejects row
with its reason instead of a silently nulled field. Malformed CSV lines land in ``__corrupt``.
Internal columns start with a double underscore so they never clash with raw column names.
"""
from __future__ import annotations

import os

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

CORRUPT = "__corrupt"
SOURCE_ROW = "__source_row"


class RawInputError(ValueError):
    pass


def read_raw(spark: SparkSession, path: str, delimiter: str = ",") -> DataFrame:
    """Raw rows as strings + ``__source_row`` (file order) + ``__corrupt`` (malformed CSV line)."""
    if not os.path.exists(path) and "://" not in path:
        raise RawInputError(f"raw input not found: {path}")
    if path.endswith(".parquet") or os.path.isdir(path):
        df = spark.read.parquet(path)
        df = df.select([F.col(c).cast("string").alias(c) for c in df.columns])
        df = df.withColumn(CORRUPT, F.lit(None).cast("string"))
    elif path.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        header = spark.read.option("header", True).option("sep", delimiter).csv(path).columns
        if not header:
            raise RawInputError(f"{path}: no header line")
        schema = T.StructType(
            [T.StructField(c, T.StringType()) for c in header] + [T.StructField(CORRUPT, T.StringType())]
        )
        df = (
            spark.read.option("header", True)
            .option("sep", delimiter)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .option("multiLine", False)
            .schema(schema)
            .csv(path)
        )
    else:
        raise RawInputError(f"{path}: unsupported raw format (use .csv, .csv.gz or .parquet)")
    # File order, stable for a given input: a gzip file is one split, read front to back.
    return df.withColumn(SOURCE_ROW, F.monotonically_increasing_id())


def require_columns(df: DataFrame, columns: dict[str, str | None], source: str) -> None:
    """Fail with the config key when a configured raw column is absent from the file."""
    present = set(df.columns)
    for key, col in columns.items():
        if col is not None and col not in present:
            raise RawInputError(
                f"{source}: column {col!r} (config key {key}) not in the raw file; columns: "
                f"{raw_columns(df)}"
            )


def record_json(df: DataFrame, raw_columns: list[str]) -> F.Column:
    """The raw row as JSON (nulls kept), or the raw line itself for malformed CSV rows."""
    as_json = F.to_json(F.struct(*[F.col(c) for c in raw_columns]), {"ignoreNullFields": "false"})
    return F.when(F.col(CORRUPT).isNotNull(), F.col(CORRUPT)).otherwise(as_json)


def raw_columns(df: DataFrame) -> list[str]:
    return [c for c in df.columns if not c.startswith("__")]
