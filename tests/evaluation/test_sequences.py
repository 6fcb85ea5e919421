import gzip
from pathlib import Path

import pandas as pd
import pytest

from simcit.evaluation.raw_sequences import DATA_ROOT, load_nyc, load_scientific
from simcit.evaluation.sequences import examples, leave_one_out, training_sequences, validate_sequences


def test_leave_one_out_layout():
    frame = leave_one_out(["u"] * 5 + ["v"] * 2 + ["w"] * 3, list("abcde") + list("xy") + list("pqr"))
    # v has only two interactions and is dropped (no training part).
    assert set(frame["user_id"]) == {"u", "w"}
    rows = {(r.user_id, r.split): (r.history, r.target) for r in frame.itertuples()}
    assert rows[("u", "train")] == (["a", "b"], "c")
    assert rows[("u", "valid")] == (["a", "b", "c"], "d")
    assert rows[("u", "test")] == (["a", "b", "c", "d"], "e")
    assert rows[("w", "train")] == ([], "p")
    assert rows[("w", "test")] == (["p", "q"], "r")
    assert training_sequences(frame) == [["a", "b", "c"], ["p"]]
    ex = examples(frame, "valid")
    assert ex.user_ids == ["u", "w"] and ex.targets == ["d", "q"]
    validate_sequences(frame)


def test_validate_sequences_catches_leaks():
    frame = leave_one_out(["u"] * 4, list("abcd"))
    bad = frame.copy()
    bad.loc[bad["split"] == "test", "history"] = pd.Series([["a", "b"]], index=bad.index[bad["split"] == "test"])
    with pytest.raises(ValueError, match="test history"):
        validate_sequences(bad)


def test_nyc_loader_orders_by_time_then_file_row(tmp_path: Path):
    d = tmp_path / "foursquare_nyc"
    d.mkdir()
    # User 7's rows are out of time order in the file; items 30 and 40 share a timestamp and
    # must keep their file order (30 before 40).
    csv = "user_id,poi_id,utc_ts\n7,10,300\n7,30,200\n7,40,200\n7,20,100\n7,50,400\n"
    with gzip.open(d / "checkins.csv.gz", "wt") as f:
        f.write(csv)
    data = load_nyc(root=tmp_path)
    test = data.sequences[data.sequences["split"] == "test"].iloc[0]
    assert test["history"] + [test["target"]] == ["20", "30", "40", "10", "50"]
    assert data.items == ["10", "20", "30", "40", "50"]


@pytest.mark.skipif(not (DATA_ROOT / "foursquare_nyc").exists(), reason="real data not present")
def test_real_loaders_counts():
    nyc = load_nyc()
    assert len(nyc.items) == 5135 and nyc.sequences["user_id"].nunique() == 1083
    sci = load_scientific()
    assert len(sci.items) == 4344 and sci.sequences["user_id"].nunique() == 8317
    for data in (nyc, sci):
        validate_sequences(data.sequences)
    # Every interaction is in exactly one place: training parts + valid + test targets.
    n_sci = sum(map(len, training_sequences(sci.sequences))) + 2 * 8317
    assert n_sci == 58492
