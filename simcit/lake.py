"""The lakehouse layer: versioned Delta Lake tables under ``<lake>/<namespace>/<table>``.

Write path (why it looks like this): Spark cannot write Delta here (the Delta jars need Maven),
so Spark writes Parquet into a private staging folder, and the driver then *streams* those files,
batch by batch, cast to the table's canonical Arrow schema, into one atomic Delta commit with
``deltalake`` (delta-rs). Until the commit's log entry exists, readers keep seeing the previous
version; a job that dies between the Parquet write and the commit leaves the table untouched
and only an orphaned staging folder, which the next run of the same table removes.
Memory stays flat: nothing materialises the whole table, batches flow from Parquet to Delta.
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, write_deltalake

from simcit.schemas import schema_of

# Fault injection for the crash-consistency test: the process dies (no cleanup, no exception
# handlers) right before the Delta commit of the named table.
FAIL_BEFORE_COMMIT_ENV = "SIMCIT_FAIL_BEFORE_COMMIT"


class LakeError(RuntimeError):
    pass


@dataclass(frozen=True)
class CommitResult:
    table: str
    version: int
    rows: int


class Lake:
    def __init__(self, root: str | Path, namespace: str):
        if not namespace or "/" in namespace:
            raise LakeError(f"namespace must be a plain name, got {namespace!r}")
        self.root = str(Path(root).resolve())
        self.namespace = namespace

    # ---- paths ---------------------------------------------------------------------------
    def table_path(self, table: str) -> str:
        schema_of(table)  # validates the name
        return os.path.join(self.root, self.namespace, table)

    def new_staging_dir(self, table: str, run_id: str) -> str:
        """A fresh folder for Spark's Parquet output; outside the table, private to one run."""
        path = os.path.join(self.root, "_staging", self.namespace, table, run_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def clear_stale_staging(self, table: str, keep: str | None = None) -> None:
        """Remove staging folders left by crashed runs of ``table`` (never the live one)."""
        parent = Path(self.root, "_staging", self.namespace, table)
        if parent.exists():
            for child in parent.iterdir():
                if keep is None or child.resolve() != Path(keep).resolve():
                    shutil.rmtree(child, ignore_errors=True)

    # ---- reads -----------------------------------------------------------------------------
    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.table_path(table))

    def table(self, table: str, version: int | None = None) -> DeltaTable:
        path = self.table_path(table)
        if not DeltaTable.is_deltatable(path):
            raise LakeError(
                f"table {self.namespace}.{table} does not exist at {path}; run the stage that writes it first"
            )
        return DeltaTable(path, version=version) if version is not None else DeltaTable(path)

    def version(self, table: str) -> int:
        return self.table(table).version()

    def dataset(self, table: str, version: int | None = None) -> ds.Dataset:
        """Arrow dataset of a table version: stream it with ``to_batches()``."""
        return self.table(table, version).to_pyarrow_dataset()

    def file_uris(self, table: str, version: int | None = None) -> list[str]:
        """Parquet files of a version, for ``spark.read.parquet(*uris)``."""
        return self.table(table, version).file_uris()

    # ---- writes ----------------------------------------------------------------------------
    def commit_parquet(
        self,
        table: str,
        staging_dir: str,
        mode: str = "overwrite",
        metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Stream Spark's Parquet output into one new Delta version, then drop the staging."""
        files = ds.dataset(staging_dir, format="parquet")
        result = self.write_batches(table, files.to_batches(batch_size=8192), mode, metadata)
        shutil.rmtree(staging_dir, ignore_errors=True)
        return result

    def write_batches(
        self,
        table: str,
        batches: Iterator[pa.RecordBatch],
        mode: str = "overwrite",
        metadata: dict[str, str] | None = None,
    ) -> CommitResult:
        """Commit a stream of record batches as one new version (atomic, schema-checked)."""
        schema = schema_of(table)
        counter = _RowCounter()
        reader = pa.RecordBatchReader.from_batches(
            schema, counter.count(conform(b, schema, table) for b in batches)
        )
        path = self.table_path(table)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.environ.get(FAIL_BEFORE_COMMIT_ENV) == table:
            # Consume the input like a real run would, then die hard before committing.
            for _ in reader:
                pass
            os._exit(86)
        props = CommitProperties(custom_metadata={"simcit.table": table, **(metadata or {})})
        try:
            write_deltalake(path, reader, mode=mode, schema_mode=None, commit_properties=props)
        except Exception:
            # delta-rs wraps errors raised inside the stream; surface ours unwrapped.
            if counter.error is not None:
                raise counter.error from None
            raise
        return CommitResult(table=table, version=DeltaTable(path).version(), rows=counter.rows)

    def write_table(self, table: str, data: pa.Table, mode: str = "overwrite", metadata=None) -> CommitResult:
        return self.write_batches(table, iter(data.to_batches()), mode, metadata)


class _RowCounter:
    """Counts rows flowing into the writer and remembers an error raised while producing them."""

    def __init__(self) -> None:
        self.rows = 0
        self.error: Exception | None = None

    def count(self, batches):
        try:
            for b in batches:
                self.rows += b.num_rows
                yield b
        except Exception as exc:
            self.error = exc
            raise


def conform(batch: pa.RecordBatch, schema: pa.Schema, table: str) -> pa.RecordBatch:
    """Select, order and cast a batch to ``schema``; refuse nulls in non-nullable columns."""
    missing = [f.name for f in schema if f.name not in batch.schema.names]
    if missing:
        raise LakeError(f"{table}: output lacks column(s) {missing}")
    columns = []
    for f in schema:
        col = batch.column(f.name)
        if not f.nullable and col.null_count:
            raise LakeError(f"{table}.{f.name}: {col.null_count} null value(s) in a non-nullable column")
        columns.append(col if col.type == f.type else col.cast(f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
