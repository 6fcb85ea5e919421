"""Delta commits: versions, schema enforcement, and crash consistency."""
import os
import subprocess
import sys
import textwrap

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simcit.lake import FAIL_BEFORE_COMMIT_ENV, Lake, LakeError
from simcit.schemas import EVAL_METRICS, TABLES


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
