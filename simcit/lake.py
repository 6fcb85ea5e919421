"""The lakehouse layer: versioned Delta Lake tables under ``<lake>/<namespace>/<table>``.

Write path (why it looks like this): Spark cannot write Delta here (the Delta jars need Maven),
so Spark writes Parquet into a private staging folder (``<lake>/_staging/...``) and the driver
then turns those files into one atomic Delta commit with ``deltalake`` (delta-rs):

* zero-copy (the normal case): every staged file's footer is checked against the table's
  canonical Arrow schema; when all fit, the files are renamed into the table folder and ONE
  transaction adds them (overwrite or append). The driver reads footers only: memory is
  O(number of files), whatever the table's size.
* streaming (fallback): files that do not fit (other types, extra or missing columns, nulls in
  a non-nullable column), empty outputs, or a layout the zero-copy path does not handle are
  streamed batch by batch, cast to the canonical schema, into ``write_deltalake``.

Until the commit's log entry exists, readers keep seeing the previous version (Delta readers
only read the files a version references). A job that dies before the commit leaves the table
untouched: an orphaned staging folder, plus for the zero-copy path unreferenced Parquet files in
the table folder, recorded in the staging folder's ``_simcit_commit.json``; the next run of the
same table removes both (``clear_stale_staging``).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, create_table_with_add_actions

from simcit.schemas import schema_of

log = logging.getLogger(__name__)

# Fault injection for the crash-consistency test: the process dies (no cleanup, no exception
# handlers) right before the Delta commit of the named table.
FAIL_BEFORE_COMMIT_ENV = "SIMCIT_FAIL_BEFORE_COMMIT"

# Written into a staging folder before its files move into the table folder: which files moved
# and from which table version on a commit would reference them (see ``clear_stale_staging``).
_INTENT = "_simcit_commit.json"
# Zero-copy commits support these modes; anything else goes through ``write_deltalake``.
_ZERO_COPY_MODES = ("overwrite", "append")
# String min/max statistics longer than this are left out of the add actions (they stay exact
# when present; long free text is useless for file skipping and bloats the log).
_MAX_STAT_CHARS = 64


class LakeError(RuntimeError):
    pass


class _StreamInstead(Exception):
    """The staged files cannot be committed as they are (the message says why)."""


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
        """Remove staging folders left by crashed runs of ``table`` (never the live one), and
        the files such a run had already moved into the table folder but never committed."""
        parent = Path(self.root, "_staging", self.namespace, table)
        if parent.exists():
            for child in parent.iterdir():
                if keep is None or child.resolve() != Path(keep).resolve():
                    self._drop_uncommitted(table, str(child))
                    shutil.rmtree(child, ignore_errors=True)

    def _drop_uncommitted(self, table: str, staging_dir: str) -> None:
        try:
            with open(os.path.join(staging_dir, _INTENT)) as fh:
                intent = json.load(fh)
        except (OSError, ValueError):
            return
        path = self.table_path(table)
        names = [n for n in intent.get("files", []) if n and os.path.basename(n) == n]
        if names and not _referenced(path, names, int(intent.get("base_version", -1))):
            for name in names:
                try:
                    os.remove(os.path.join(path, name))
                except FileNotFoundError:
                    pass

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
        """Commit Spark's Parquet output as one new Delta version, then drop the staging.

        Zero-copy when every staged file already has the table's schema (the files become the
        version's files); otherwise the rows are streamed and cast (``write_batches``)."""
        try:
            result = self._commit_files(table, staging_dir, mode, metadata)
        except _StreamInstead as why:
            log.debug("%s: committing %s through the Arrow stream (%s)", table, staging_dir, why)
            result = self._commit_stream(table, staging_dir, mode, metadata)
        shutil.rmtree(staging_dir, ignore_errors=True)
        return result

    def _commit_stream(self, table: str, staging_dir: str, mode: str, metadata) -> CommitResult:
        files = ds.dataset(staging_dir, format="parquet")
        return self.write_batches(table, files.to_batches(batch_size=8192), mode, metadata)

    def _commit_files(self, table: str, staging_dir: str, mode: str, metadata) -> CommitResult:
        """The zero-copy commit; raises ``_StreamInstead`` (nothing changed) when the staging
        does not qualify.

        For local/POSIX lakes only: the files are *renamed* into the table folder, which is
        atomic and free on one filesystem. An object-store lake (s3://, gs://, abfss://) would do
        the same with a server-side copy of each object into the table prefix (no bytes through
        the driver), the same add actions and commit, then delete the staged objects; until
        that exists, a lake root with a URI scheme takes the streaming path."""
        if mode not in _ZERO_COPY_MODES:
            raise _StreamInstead(f"mode {mode!r}")
        if "://" in self.root:
            raise _StreamInstead("not a local lake")
        schema = schema_of(table)
        staged = _staged_parquet_files(staging_dir)
        if staged is None:
            raise _StreamInstead("staging layout (sub-folders or non-Parquet files)")
        parts: list[tuple[str, pq.FileMetaData]] = []
        for src in staged:
            try:
                md = pq.read_metadata(src)
            except Exception:
                raise _StreamInstead(f"unreadable footer: {src}") from None  # the stream path reports it
            if md.num_rows == 0:
                continue  # e.g. Spark's schema-only file of an empty output: nothing to add
            if not _fits(src, md, schema):
                raise _StreamInstead(f"{os.path.basename(src)} does not have the table's schema")
            parts.append((src, md))
        if not parts:
            raise _StreamInstead("no rows")  # the stream path writes the empty version as before

        path = self.table_path(table)
        existing = DeltaTable(path) if DeltaTable.is_deltatable(path) else None
        if existing is not None and existing.schema().to_json() != DeltaSchema.from_arrow(schema).to_json():
            raise _StreamInstead("the table has another schema")  # write_deltalake refuses it
        created_dir = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        if os.stat(staging_dir).st_dev != os.stat(path).st_dev:
            _remove_empty_dir(path, created_dir)
            raise _StreamInstead("staging on another filesystem")
        base_version = existing.version() if existing is not None else -1
        # Plain characters only: the names are looked up verbatim in the (URL-encoded) log.
        run = re.sub(r"[^A-Za-z0-9_-]", "", os.path.basename(os.path.normpath(staging_dir)))[:40] or "run"
        token = uuid.uuid4().hex[:8]  # unique per commit: one run may append twice to a table
        names = [f"part-{run}-{token}-{i:05d}.parquet" for i in range(len(parts))]
        intent = os.path.join(staging_dir, _INTENT)
        with open(intent, "w") as fh:
            json.dump({"table": table, "base_version": base_version, "files": names}, fh)
            fh.flush()
            os.fsync(fh.fileno())

        moved: list[tuple[str, str]] = []

        def roll_back() -> bool:
            """Move the files back into the staging folder; False if some could not be."""
            for src, dst in reversed(moved):
                try:
                    os.rename(dst, src)
                except OSError:
                    pass  # left as an unreferenced orphan, recorded in the intent
            if any(os.path.exists(dst) for _, dst in moved):
                return False
            try:
                os.remove(intent)  # all back in the staging folder: nothing left to clear
            except OSError:
                pass
            _remove_empty_dir(path, created_dir)
            return True

        try:
            for (src, _), name in zip(parts, names):
                dst = os.path.join(path, name)
                os.rename(src, dst)
                moved.append((src, dst))
        except OSError as exc:
            if not roll_back():
                raise  # the staging folder is incomplete: streaming it would lose rows
            raise _StreamInstead(f"rename failed: {exc}") from None
        try:
            adds = []
            for (_, md), (_, dst) in zip(parts, moved):
                st = os.stat(dst)
                adds.append(
                    AddAction(
                        path=os.path.basename(dst),
                        size=st.st_size,
                        partition_values={},
                        modification_time=int(st.st_mtime * 1000),
                        data_change=True,
                        stats=json.dumps(_file_stats(md, schema), separators=(",", ":")),
                    )
                )
            if os.environ.get(FAIL_BEFORE_COMMIT_ENV) == table:
                os._exit(86)  # die hard: the moved files stay unreferenced, the intent records them
            props = CommitProperties(custom_metadata={"simcit.table": table, **(metadata or {})})
            if existing is None:
                create_table_with_add_actions(
                    path, DeltaSchema.from_arrow(schema), adds, mode="error", commit_properties=props
                )
            else:
                existing.create_write_transaction(adds, mode, schema, commit_properties=props)
        except BaseException:
            # Undo only what no version references (an error raised after the log entry was
            # written, e.g. by a post-commit hook, must not take the committed files away).
            if not _referenced(path, names, base_version):
                roll_back()
            raise
        os.remove(intent)
        rows = sum(md.num_rows for _, md in parts)
        log.debug("%s: committed %d staged file(s), %d rows, zero-copy", table, len(parts), rows)
        return CommitResult(table=table, version=DeltaTable(path).version(), rows=rows)

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


# ---- zero-copy helpers -------------------------------------------------------------------------
def _staged_parquet_files(staging_dir: str) -> list[str] | None:
    """The data files of a staging folder, as ``ds.dataset`` would see them (names starting with
    ``_`` or ``.``, e.g. ``_SUCCESS`` and Spark's ``.crc`` files, are not data); ``None`` for a
    layout the zero-copy path leaves alone (sub-folders, non-``.parquet`` files, no folder)."""
    try:
        entries = sorted(os.scandir(staging_dir), key=lambda e: e.name)
    except OSError:
        return None
    files = []
    for e in entries:
        if e.name.startswith(("_", ".")):
            continue
        if not e.is_file(follow_symlinks=False) or not e.name.endswith(".parquet"):
            return None
        files.append(e.path)
    return files


def _fits(path: str, md: pq.FileMetaData, schema: pa.Schema) -> bool:
    """Whether a Parquet file can be a file of a table of ``schema`` as it is: the same columns
    in the same order, the same Arrow types as read from the footer (nested field names and
    nullable-vs-not children aside, where that only widens), and no null in a non-nullable column."""
    try:
        file_schema = md.schema.to_arrow_schema()
    except Exception:
        return False
    if file_schema.names != schema.names:
        return False
    for ff, cf in zip(file_schema, schema):
        if not _type_fits(ff.type, cf.type):
            return False
        if ff.nullable and not cf.nullable and not _no_nulls(path, md, ff):
            return False
    return True


def _type_fits(ft: pa.DataType, ct: pa.DataType) -> bool:
    def child(ff: pa.Field, cf: pa.Field) -> bool:
        return _type_fits(ff.type, cf.type) and (cf.nullable or not ff.nullable)

    if pa.types.is_list(ct) or pa.types.is_large_list(ct):
        return type(ft) is type(ct) and child(ft.value_field, ct.value_field)
    if pa.types.is_map(ct):
        return pa.types.is_map(ft) and child(ft.key_field, ct.key_field) and child(ft.item_field, ct.item_field)
    if pa.types.is_struct(ct):
        return (
            pa.types.is_struct(ft)
            and [f.name for f in ft] == [f.name for f in ct]
            and all(child(ff, cf) for ff, cf in zip(ft, ct))
        )
    return ft == ct


def _no_nulls(path: str, md: pq.FileMetaData, field: pa.Field) -> bool:
    """True when column ``field`` of the file holds no null: from the footer's null counts when
    they settle it (a flat column; a nested one whose leaves count no nulls at all), else by
    streaming that one column (its leaves' null counts also count empty lists)."""
    leaves = [
        i for i in range(md.num_columns)
        if md.schema.column(i).path == field.name or md.schema.column(i).path.startswith(field.name + ".")
    ]
    nested = pa.types.is_nested(field.type)
    counts = []
    for rg in range(md.num_row_groups):
        for i in leaves:
            st = md.row_group(rg).column(i).statistics
            counts.append(st.null_count if st is not None and st.has_null_count else None)
    if counts and None not in counts:
        if sum(counts) == 0:
            return True
        if not nested:
            return False  # real nulls: the stream path refuses them with its LakeError
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=[field.name]):
        if batch.column(0).null_count:
            return False
    return True


def _file_stats(md: pq.FileMetaData, schema: pa.Schema) -> dict:
    """Delta ``stats`` of one file from its footer: numRecords, and for flat columns nullCount
    and, where safe for file skipping, minValues / maxValues (strings, integers, UTC timestamps
    rounded outwards to milliseconds; no floats: Parquet bounds leave NaN out)."""
    stats: dict = {"numRecords": md.num_rows}
    mins, maxs, nulls = {}, {}, {}
    index = {md.schema.column(i).path: i for i in range(md.num_columns)}
    for f in schema:
        i = index.get(f.name)
        if i is None or pa.types.is_nested(f.type):
            continue
        n, lo, hi, bounded = 0, None, None, _stat_kind(f.type) is not None
        for rg in range(md.num_row_groups):
            group = md.row_group(rg)
            st = group.column(i).statistics
            if st is None or not st.has_null_count:
                n = None
            elif n is not None:
                n += st.null_count
            if not bounded:
                continue
            if st is None or not st.has_min_max:
                if st is not None and st.has_null_count and st.null_count == group.num_rows:
                    continue  # all null in this row group: no bound needed from it
                bounded = False
                continue
            a, b = _stat_value(f.type, st, "min"), _stat_value(f.type, st, "max")
            if a is None or b is None:
                bounded = False
                continue
            lo = a if lo is None or a < lo else lo
            hi = b if hi is None or b > hi else hi
        if n is not None:
            nulls[f.name] = n
        if bounded and lo is not None:
            a, b = _format_bound(f.type, lo, "min"), _format_bound(f.type, hi, "max")
            if a is not None and b is not None:
                mins[f.name], maxs[f.name] = a, b
    if mins:
        stats["minValues"], stats["maxValues"] = mins, maxs
    if nulls:
        stats["nullCount"] = nulls
    return stats


def _stat_kind(t: pa.DataType) -> str | None:
    if pa.types.is_string(t):
        return "string"
    if pa.types.is_signed_integer(t):
        return "int"
    if pa.types.is_timestamp(t) and t.tz in ("UTC", "+00:00", "Etc/UTC"):
        return "timestamp"
    return None


def _stat_value(t: pa.DataType, st, which: str):
    kind = _stat_kind(t)
    if kind == "timestamp":
        raw = st.min_raw if which == "min" else st.max_raw
        return raw if isinstance(raw, int) else None
    value = st.min if which == "min" else st.max
    if kind == "string":
        return value if isinstance(value, str) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_PER_MS = {"s": None, "ms": 1, "us": 1000, "ns": 1_000_000}


def _format_bound(t: pa.DataType, value, which: str):
    kind = _stat_kind(t)
    if kind == "string":
        return value if len(value) <= _MAX_STAT_CHARS else None
    if kind == "int":
        return value
    # Delta keeps timestamp bounds in milliseconds: floor the minimum, ceil the maximum.
    per_ms = _PER_MS[t.unit]
    if per_ms is None:
        ms = value * 1000
    else:
        ms = value // per_ms if which == "min" else -(-value // per_ms)
    when = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(milliseconds=ms)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _referenced(table_path: str, names: list[str], after_version: int) -> bool:
    """Whether a commit after ``after_version`` adds any of ``names`` (file names in the table
    folder). Reads the JSON commits only; when they are incomplete (log clean-up) it answers
    True, so that no caller deletes a file a version may reference."""
    log_dir = os.path.join(table_path, "_delta_log")
    try:
        entries = os.listdir(log_dir)
    except FileNotFoundError:
        return False
    versions = sorted(
        int(n[:20]) for n in entries if len(n) == 25 and n.endswith(".json") and n[:20].isdigit()
    )
    later = [v for v in versions if v > after_version]
    if not later:
        return False
    if later[0] != after_version + 1 or later != list(range(later[0], later[-1] + 1)):
        return True
    for v in later:
        try:
            with open(os.path.join(log_dir, f"{v:020d}.json")) as fh:
                text = fh.read()
        except OSError:
            return True
        if any(name in text for name in names):
            return True
    return False


def _remove_empty_dir(path: str, created: bool) -> None:
    if created:
        try:
            os.rmdir(path)
        except OSError:
            pass
