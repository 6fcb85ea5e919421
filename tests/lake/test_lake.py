"""Delta commits: versions, schema enforcement, zero-copy commits, and crash consistency."""
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap

import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from simcit.lake import FAIL_BEFORE_COMMIT_ENV, Lake, LakeError
from simcit.schemas import EVAL_METRICS, SEMANTIC_IDS, SEQUENCES, TABLES


def _metrics(value: float, n: int = 3) -> pa.Table:
    return pa.table(
        {
            "run_id": ["r"] * n, "dataset": ["nyc"] * n, "split": ["test"] * n, "tokenizer": ["simcit"] * n,
            "model": ["lm"] * n, "metric": ["recall"] * n, "k": pa.array([1, 5, 10][:n], pa.int32()),
            "value": [value] * n,
        },
        schema=EVAL_METRICS,
    )


def test_every_table_has_a_schema():
    assert set(TABLES) == {"items", "interactions", "rejects", "item_features", "sequences", "semantic_ids", "eval_metrics"}


def test_versions_time_travel_and_readers(tmp_path):
    lake = Lake(tmp_path, "t")
    assert lake.write_table("eval_metrics", _metrics(0.1)).version == 0
    assert lake.write_table("eval_metrics", _metrics(0.2)).version == 1
    assert lake.write_table("eval_metrics", _metrics(0.3, 2), mode="append").version == 2
    assert pl.read_delta(lake.table_path("eval_metrics"), version=0)["value"].to_list() == [0.1] * 3
    assert lake.dataset("eval_metrics").count_rows() == 5
    assert len(lake.file_uris("eval_metrics", version=1)) >= 1


def test_schema_is_enforced(tmp_path):
    lake = Lake(tmp_path, "t")
    bad = _metrics(0.1).drop_columns(["k"])
    with pytest.raises(LakeError, match="lacks column"):
        lake.write_batches("eval_metrics", iter(bad.to_batches()))
    nulls = _metrics(0.1).set_column(0, "run_id", pa.array([None, "a", "b"], pa.string()))
    with pytest.raises(LakeError, match="run_id: 1 null"):
        lake.write_batches("eval_metrics", iter(nulls.to_batches()))
    assert not lake.exists("eval_metrics")


def test_commit_parquet_streams_and_casts(tmp_path):
    lake = Lake(tmp_path, "t")
    staging = lake.new_staging_dir("eval_metrics", "run1")
    os.makedirs(staging)
    t = _metrics(0.5)
    # Spark-like files: int64 k and extra columns must be cast / dropped to the canonical schema.
    loose = t.set_column(6, "k", t.column("k").cast(pa.int64())).append_column("extra", pa.array([1, 2, 3]))
    pq.write_table(loose, os.path.join(staging, "part-0.parquet"))
    res = lake.commit_parquet("eval_metrics", staging)
    assert res.rows == 3 and res.version == 0
    assert lake.table("eval_metrics").schema().to_arrow().names == EVAL_METRICS.names
    assert not os.path.exists(staging)


def test_killed_between_parquet_and_commit_keeps_previous_version(tmp_path):
    lake = Lake(tmp_path, "t")
    lake.write_table("eval_metrics", _metrics(0.1))
    script = textwrap.dedent(
        f"""
        import os, pyarrow.parquet as pq
        from simcit.lake import Lake
        from tests.lake.test_lake import _metrics
        lake = Lake({str(tmp_path)!r}, "t")
        staging = lake.new_staging_dir("eval_metrics", "crashrun")
        os.makedirs(staging)
        pq.write_table(_metrics(0.9), os.path.join(staging, "part-0.parquet"))
        lake.commit_parquet("eval_metrics", staging)
        print("not reached")
        """
    )
    env = {**os.environ, FAIL_BEFORE_COMMIT_ENV: "eval_metrics", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 86, proc.stderr
    assert "not reached" not in proc.stdout
    # The table is exactly the old version; the orphaned staging folder is still there ...
    assert lake.version("eval_metrics") == 0
    assert pl.read_delta(lake.table_path("eval_metrics"))["value"].to_list() == [0.1] * 3
    orphan = lake.new_staging_dir("eval_metrics", "crashrun")
    assert os.path.exists(orphan)
    # ... until the next run of that table clears it.
    lake.clear_stale_staging("eval_metrics")
    assert not os.path.exists(orphan)


# ---- zero-copy commits of staged Parquet ------------------------------------------------------
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def _sids(start: int, n: int, version: str = "v1") -> pa.Table:
    return pa.table(
        {
            "item_id": [f"i{start + i:05d}" for i in range(n)],
            "codes": [[(start + i) % 7, i % 3, 1] for i in range(n)],
            "sid": [f"s{start + i:05d}" for i in range(n)],
            "tokenizer_version": [version] * n,
            "created_at": [T0 + dt.timedelta(seconds=start + i, microseconds=123) for i in range(n)],
        },
        schema=SEMANTIC_IDS,
    )


def _spark_like(schema: pa.Schema) -> pa.Schema:
    """What a Spark file's footer reads as: top-level columns nullable, non-null list elements."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_list(t):
            t = pa.list_(pa.field("element", t.value_type, nullable=False))
        fields.append(pa.field(f.name, t, nullable=True))
    return pa.schema(fields)


def _stage(lake: Lake, table: str, run: str, parts: list[pa.Table], spark_like: bool = True) -> str:
    """A staging folder laid out like Spark's output (part files, _SUCCESS, .crc files)."""
    staging = lake.new_staging_dir(table, run)
    os.makedirs(staging)
    for i, part in enumerate(parts):
        name = f"part-{i:05d}-{run}-c000.snappy.parquet"
        if spark_like:
            pq.write_table(part.cast(_spark_like(part.schema)), os.path.join(staging, name), store_schema=False)
        else:
            pq.write_table(part, os.path.join(staging, name))
        open(os.path.join(staging, f".{name}.crc"), "w").close()
    open(os.path.join(staging, "_SUCCESS"), "w").close()
    return staging


def _adds(lake: Lake, table: str) -> list[dict]:
    return pa.table(lake.table(table).get_add_actions(flatten=True)).to_pylist()


def _sorted(t: pa.Table) -> list[dict]:
    return sorted(t.to_pylist(), key=lambda r: r["item_id"])


def _parquet_files(path: str) -> set[str]:
    return {n for n in os.listdir(path) if n.endswith(".parquet")}


def test_zero_copy_commit_of_multi_file_staging(tmp_path):
    lake = Lake(tmp_path, "t")
    parts = [_sids(0, 40), _sids(40, 25), _sids(65, 1)]
    staging = _stage(lake, "semantic_ids", "run1", parts)
    res = lake.commit_parquet("semantic_ids", staging, metadata={"simcit.run_id": "run1"})
    assert (res.table, res.version, res.rows) == ("semantic_ids", 0, 66)
    assert not os.path.exists(staging)
    # The staged files themselves became the version's files (renamed, not rewritten).
    adds = _adds(lake, "semantic_ids")
    assert sorted(a["num_records"] for a in adds) == [1, 25, 40]
    assert all(a["path"].startswith("part-run1-") for a in adds)
    assert all(a["null_count.item_id"] == 0 for a in adds)
    assert _parquet_files(lake.table_path("semantic_ids")) == {a["path"] for a in adds}
    # Commit info, schema and every reader.
    info = lake.table("semantic_ids").history(1)[0]
    assert info["simcit.run_id"] == "run1" and info["simcit.table"] == "semantic_ids"
    assert pa.schema(lake.table("semantic_ids").schema().to_arrow()) == SEMANTIC_IDS
    expected = _sorted(pa.concat_tables(parts))
    assert _sorted(lake.dataset("semantic_ids").to_table()) == expected
    assert _sorted(lake.table("semantic_ids").to_pyarrow_table()) == expected
    assert _sorted(pq.ParquetDataset(lake.file_uris("semantic_ids")).read().cast(SEMANTIC_IDS)) == expected
    df = pl.read_delta(lake.table_path("semantic_ids")).sort("item_id")
    assert df["item_id"].to_list() == [r["item_id"] for r in expected]
    assert df["codes"].to_list() == [r["codes"] for r in expected]
    # File statistics are exact enough for file skipping (timestamps rounded outwards to ms).
    last = expected[-1]["created_at"]
    hit = lake.dataset("semantic_ids").to_table(filter=pads.field("created_at") == pa.scalar(last, SEMANTIC_IDS.field("created_at").type))
    assert hit["item_id"].to_pylist() == [expected[-1]["item_id"]]
    assert lake.dataset("semantic_ids").count_rows(filter=pads.field("sid") == "s00040") == 1


def test_zero_copy_overwrite_and_append(tmp_path):
    lake = Lake(tmp_path, "t")
    assert lake.write_table("semantic_ids", _sids(0, 5)).version == 0  # a delta-rs written version first
    res = lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run2", [_sids(100, 7), _sids(107, 3, "v2")]))
    assert (res.version, res.rows) == (1, 10)
    assert _sorted(lake.dataset("semantic_ids").to_table()) == _sorted(pa.concat_tables([_sids(100, 7), _sids(107, 3, "v2")]))
    assert sum(a["num_records"] for a in _adds(lake, "semantic_ids")) == 10
    # Earlier versions stay readable (time travel).
    assert _sorted(lake.dataset("semantic_ids", version=0).to_table()) == _sorted(_sids(0, 5))
    res = lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run3", [_sids(200, 4)]))
    assert (res.version, res.rows) == (2, 4)
    assert lake.dataset("semantic_ids").count_rows() == 4
    res = lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run4", [_sids(300, 2)]), mode="append")
    assert (res.version, res.rows) == (3, 2)
    assert pl.read_delta(lake.table_path("semantic_ids"))["item_id"].sort().to_list() == [
        "i00200", "i00201", "i00202", "i00203", "i00300", "i00301"
    ]
    assert lake.table("semantic_ids").history(1)[0]["simcit.table"] == "semantic_ids"


def test_mismatched_staging_falls_back_to_the_arrow_stream(tmp_path):
    lake = Lake(tmp_path, "t")
    good = _sids(0, 6)
    # int64 codes (Spark's default for Python ints): not the table's type, so streamed and cast.
    loose = good.set_column(1, "codes", good.column("codes").cast(pa.list_(pa.int64())))
    staging = _stage(lake, "semantic_ids", "run1", [loose.slice(0, 3), loose.slice(3)], spark_like=False)
    res = lake.commit_parquet("semantic_ids", staging)
    assert (res.version, res.rows) == (0, 6) and not os.path.exists(staging)
    assert not any(a["path"].startswith("part-run1-") for a in _adds(lake, "semantic_ids"))
    assert _sorted(lake.dataset("semantic_ids").to_table()) == _sorted(good)
    # Nulls in a non-nullable column: the footer says so, the stream path refuses them.
    bad = _sids(10, 3).cast(_spark_like(SEMANTIC_IDS))
    bad = bad.set_column(2, "sid", pa.array(["a", None, "c"], pa.string()))
    staging = _stage(lake, "semantic_ids", "run2", [bad], spark_like=False)
    with pytest.raises(LakeError, match="sid: 1 null"):
        lake.commit_parquet("semantic_ids", staging)
    assert lake.version("semantic_ids") == 0
    assert len(os.listdir(staging)) == 3  # nothing moved out of the staging folder
    # Empty histories but no null list: zero-copy (the column is scanned, the footer can't tell).
    seq = pa.table(
        {"user_id": ["u1", "u2"], "split": ["train", "test"], "history": [[], ["a"]],
         "history_ts": [[], [T0]], "target": ["a", "b"], "target_ts": [T0, T0]},
        schema=SEQUENCES,
    )
    lake.commit_parquet("sequences", _stage(lake, "sequences", "run3", [seq]))
    assert all(a["path"].startswith("part-run3-") for a in _adds(lake, "sequences"))
    assert lake.dataset("sequences").to_table().sort_by("user_id").to_pylist() == seq.to_pylist()


def test_commit_error_moves_the_files_back(tmp_path, monkeypatch):
    lake = Lake(tmp_path, "t")
    lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run1", [_sids(0, 5)]))
    before = _parquet_files(lake.table_path("semantic_ids"))

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(DeltaTable, "create_write_transaction", boom)
    staging = _stage(lake, "semantic_ids", "run2", [_sids(10, 5), _sids(15, 5)])
    staged = sorted(os.listdir(staging))
    with pytest.raises(OSError, match="disk full"):
        lake.commit_parquet("semantic_ids", staging)
    assert sorted(os.listdir(staging)) == staged
    assert _parquet_files(lake.table_path("semantic_ids")) == before
    assert lake.version("semantic_ids") == 0
    assert _sorted(lake.dataset("semantic_ids").to_table()) == _sorted(_sids(0, 5))


def test_killed_before_zero_copy_commit_leaves_no_referenced_orphans(tmp_path):
    lake = Lake(tmp_path, "t")
    lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run1", [_sids(0, 5)]))
    table_dir = lake.table_path("semantic_ids")
    before = _parquet_files(table_dir)
    script = textwrap.dedent(
        f"""
        from simcit.lake import Lake
        from tests.lake.test_lake import _sids, _stage
        lake = Lake({str(tmp_path)!r}, "t")
        lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "crashrun", [_sids(50, 5), _sids(55, 5)]))
        print("not reached")
        """
    )
    env = {**os.environ, FAIL_BEFORE_COMMIT_ENV: "semantic_ids", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert proc.returncode == 86, proc.stderr
    assert "not reached" not in proc.stdout
    # The previous version reads exactly as before; the moved files are not referenced by it.
    assert lake.version("semantic_ids") == 0
    assert _sorted(lake.dataset("semantic_ids").to_table()) == _sorted(_sids(0, 5))
    assert pl.read_delta(table_dir).height == 5
    referenced = {a["path"] for a in _adds(lake, "semantic_ids")}
    assert referenced == before
    orphans = _parquet_files(table_dir) - before
    assert len(orphans) == 2 and not orphans & referenced
    # The next run of the table clears the orphaned staging folder and the moved files.
    lake.clear_stale_staging("semantic_ids")
    assert _parquet_files(table_dir) == before
    assert not os.path.exists(lake.new_staging_dir("semantic_ids", "crashrun"))
    assert lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run3", [_sids(70, 2)])).version == 1


def test_clear_stale_staging_keeps_files_a_version_references(tmp_path):
    """A run that died after its commit but before dropping its staging folder."""
    lake = Lake(tmp_path, "t")
    lake.write_table("semantic_ids", _sids(0, 2))
    lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run1", [_sids(0, 5)]))
    committed = {a["path"] for a in _adds(lake, "semantic_ids")}
    leftover = lake.new_staging_dir("semantic_ids", "run1")
    os.makedirs(leftover)
    with open(os.path.join(leftover, "_simcit_commit.json"), "w") as fh:
        json.dump({"table": "semantic_ids", "base_version": 0, "files": sorted(committed)}, fh)
    lake.clear_stale_staging("semantic_ids")
    assert not os.path.exists(leftover)
    assert committed <= _parquet_files(lake.table_path("semantic_ids"))
    assert lake.dataset("semantic_ids").count_rows() == 5


def test_empty_staging_commits_an_empty_version(tmp_path):
    lake = Lake(tmp_path, "t")
    staging = _stage(lake, "semantic_ids", "run1", [])  # Spark: _SUCCESS only
    res = lake.commit_parquet("semantic_ids", staging)
    assert (res.version, res.rows) == (0, 0) and not os.path.exists(staging)
    assert lake.dataset("semantic_ids").count_rows() == 0
    assert pa.schema(lake.table("semantic_ids").schema().to_arrow()) == SEMANTIC_IDS
    lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run2", [_sids(0, 3)]))
    # Spark's output of an empty DataFrame: one schema-only file.
    res = lake.commit_parquet("semantic_ids", _stage(lake, "semantic_ids", "run3", [_sids(0, 0)]))
    assert (res.version, res.rows) == (2, 0)
    assert lake.dataset("semantic_ids").count_rows() == 0
    assert pl.read_delta(lake.table_path("semantic_ids")).height == 0
    assert lake.dataset("semantic_ids", version=1).count_rows() == 3
