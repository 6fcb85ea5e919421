"""Shared fixtures: one local Spark session per test run, real data slices, temp lakes."""
from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
NYC_CONFIG = REPO / "configs" / "nyc.yaml"
SCIENTIFIC_CONFIG = REPO / "configs" / "scientific.yaml"

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def spark():
    """The embedded-default session (local[2]); stages reuse it via getActiveSession()."""
    from simcit.config import SparkConfig
    from simcit.spark_session import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=4), "simcit-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def nyc_slice(tmp_path_factory) -> Path:
    """Real NYC data, small: the 60 most active users' check-ins and the POIs they visit
    (plus 20 POIs nobody in the slice visits). Written as CSV.gz like the bundled files."""
    out = tmp_path_factory.mktemp("nyc_slice")
    pois = pd.read_csv(DATA / "foursquare_nyc" / "pois.csv.gz", dtype=str, keep_default_na=False)
    checkins = pd.read_csv(DATA / "foursquare_nyc" / "checkins.csv.gz", dtype=str, keep_default_na=False)
    users = checkins["user_id"].value_counts().index[:60]
    ck = checkins[checkins["user_id"].isin(users)]
    ck = ck.groupby("user_id", sort=False).head(120)  # cap each user: keeps the slice small
    visited = set(ck["poi_id"])
    extra = pois[~pois["poi_id"].isin(visited)].head(20)
    sl = pd.concat([pois[pois["poi_id"].isin(visited)], extra])
    with gzip.open(out / "pois.csv.gz", "wt") as fh:
        sl.to_csv(fh, index=False)
    with gzip.open(out / "checkins.csv.gz", "wt") as fh:
        ck.to_csv(fh, index=False)
    return out


def write_config(tmp_path: Path, base: Path, items: Path, interactions: Path, extra: list[str] | None = None) -> Path:
    """A copy of ``base`` pointing at other raw files (absolute paths)."""
    import yaml

    data = yaml.safe_load(base.read_text())
    data["dataset"]["items"] = str(items)
    data["dataset"]["interactions"] = str(interactions)
    path = tmp_path / f"config_{base.stem}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
