"""Leave-one-out sequences: order, tie-breaks, caps, repeats, short users."""
import polars as pl
import pytest
import yaml

from simcit.cli import run_stage

pytestmark = pytest.mark.spark


def _config(tmp_path, rows, **seq):
    items = tmp_path / "items.csv"
    items.write_text("id,name\n" + "".join(f"{c},item {c}\n" for c in "abcdefgh"))
    inter = tmp_path / "inter.csv"
    inter.write_text("user,item,t\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    cfg = {
        "namespace": "seq",
        "dataset": {
            "name": "toy", "items": str(items), "interactions": str(inter),
            "item_columns": {"item_id": "id"},
            "interaction_columns": {"user_id": "user", "item_id": "item", "ts": "t", "ts_format": "unix_seconds"},
            "text_template": ["{name}"],
        },
        "sequences": {"max_history": 3, **seq},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


ROWS = [
    # u1: b and c share a timestamp: file order (b first) breaks the tie.
    ("u1", "a", 10), ("u1", "b", 20), ("u1", "c", 20), ("u1", "d", 30), ("u1", "e", 40), ("u1", "f", 50),
    ("u2", "a", 5), ("u2", "b", 1),      # two events, out of file order in time
    ("u3", "h", 7),                       # one event
    ("u4", "a", 1), ("u4", "a", 2), ("u4", "b", 3), ("u4", "b", 4), ("u4", "c", 5),
]


def _rows(tmp_path, **seq):
    lake = tmp_path / "lake"
    run_stage("ingest", str(_config(tmp_path, ROWS, **seq)), str(lake))
    run_stage("sequences", str(_config(tmp_path, ROWS, **seq)), str(lake))
    df = pl.read_delta(str(lake / "seq" / "sequences"))
    return {(r["user_id"], r["split"]): (r["history"], r["target"]) for r in df.iter_rows(named=True)}, df


def test_leave_one_out_with_tie_breaks_and_cap(spark, tmp_path):
    rows, df = _rows(tmp_path)
    assert rows[("u1", "test")] == (["c", "d", "e"], "f")      # capped to the last 3
    assert rows[("u1", "valid")] == (["b", "c", "d"], "e")
    assert rows[("u1", "train")] == (["a", "b", "c"], "d")
    assert rows[("u2", "train")] == (["b"], "a")               # by time, not file order
    assert ("u2", "valid") not in rows
    assert rows[("u3", "train")] == ([], "h")                  # nobody is dropped
    assert rows[("u4", "test")] == (["a", "b", "b"], "c")
    hist_ts = df.filter((pl.col("user_id") == "u1") & (pl.col("split") == "test"))["history_ts"][0]
    assert list(hist_ts) == sorted(hist_ts)


def test_collapse_repeats(spark, tmp_path):
    rows, _ = _rows(tmp_path, collapse_repeats=True)
    assert rows[("u4", "test")] == (["a", "b"], "c")
    assert rows[("u4", "train")] == ([], "a")


def test_rerun_is_deterministic(spark, tmp_path):
    a, _ = _rows(tmp_path)
    b, _ = _rows(tmp_path)
    assert a == b
