"""A synthetic POI catalogue of any size, made from the real Foursquare NYC data.

NYC is replicated as many times as needed. Each replica is a "virtual city": the real POIs
translated by a fixed offset (replicas tile a grid 0.6 degrees apart, so each city keeps NYC's
real density instead of piling 40 copies onto Manhattan), jittered by ~30 m, and renamed with a
varied suffix so texts differ. Check-ins are replicated with the POIs (user u of replica r visits
the replica-r POIs at the real times), which keeps NYC's ratio of ~29 check-ins per POI, close
to the reference deployment's (~28).
"""
from __future__ import annotations

import argparse
import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = [
    "Downtown", "Uptown", "Express", "Central", "Harbor", "Plaza", "Corner", "Station", "Market",
    "Garden", "Square", "Point", "Heights", "Village", "Park", "Terrace", "Landing", "Commons",
]


def build(n_items: int, out_dir: Path, with_checkins: bool = True, seed: int = 0) -> tuple[Path, Path]:
    pois = pd.read_csv(REPO / "data/foursquare_nyc/pois.csv.gz", dtype=str, keep_default_na=False)
    replicas = math.ceil(n_items / len(pois))
    rng = np.random.default_rng(seed)
    side = math.ceil(math.sqrt(replicas))
    frames = []
    for r in range(replicas):
        df = pois.copy()
        dlat, dlon = 0.6 * (r // side), 0.6 * (r % side)
        lat = df["latitude"].astype(float) + dlat + rng.normal(0, 0.0003, len(df))
        lon = df["longitude"].astype(float) + dlon + rng.normal(0, 0.0003, len(df))
        df["latitude"], df["longitude"] = lat.round(8).astype(str), lon.round(8).astype(str)
        df["poi_id"] = df["poi_id"] + f"_{r}"
        suffix = np.array(SUFFIXES)[rng.integers(0, len(SUFFIXES), len(df))]
        named = df["fsq_name"] != ""
        df.loc[named, "fsq_name"] = df.loc[named, "fsq_name"] + " " + suffix[named.to_numpy()] + f" {r}"
        frames.append(df)
    catalogue = pd.concat(frames, ignore_index=True).head(n_items)
    out_dir.mkdir(parents=True, exist_ok=True)
    items_path = out_dir / "pois.csv.gz"
    with gzip.open(items_path, "wt", compresslevel=1) as fh:
        catalogue.to_csv(fh, index=False)
    # Check-ins as a folder of Parquet files: splittable, so Spark reads them in parallel
    # (one big .csv.gz would be a single task).
    checkins_path = out_dir / "checkins_parquet"
    checkins_path.mkdir(exist_ok=True)
    kept = set(catalogue["poi_id"])
    ck = pd.read_csv(REPO / "data/foursquare_nyc/checkins.csv.gz", dtype=str, keep_default_na=False)
    for r in range(replicas if with_checkins else 1):
        df = ck.copy()
        df["user_id"] = df["user_id"] + f"_{r}"
        df["poi_id"] = df["poi_id"] + f"_{r}"
        df[df["poi_id"].isin(kept)].to_parquet(checkins_path / f"part-{r:04d}.parquet", index=False)
    return items_path, checkins_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/_work/synthetic")
    args = ap.parse_args()
    items, checkins = build(args.items, args.out)
    print(items, checkins)


if __name__ == "__main__":
    main()
