"""Tokenizer training throughput (part a): SimCIT on the NYC ``item_features`` (text 384 + geo 64
+ cf 64, L=3, K=256, batch 256 per worker), items/s in steady-state epochs:

  1. one process without Ray (``benchmarks/tokenizer_models.py`` on the same features, 1 and 2
     threads: on a 2-core machine shared with other jobs, 2 OpenMP threads can stall badly);
  2. the ``train-tokenizer`` stage on Ray Train with 1 worker (2 threads) and 2 workers (1 each).

For Ray, "wall" counts everything an epoch takes in the workers (data from Ray Data, conversion,
steps); "compute" only the training steps; both are medians over epochs 2.. (epoch 1 pays for the
pipeline start-up; the median shrugs off a neighbour's burst on a shared machine).
The source lake is only read: the table is copied into a scratch lake for the Ray runs.

    python benchmarks/tokenizer.py --lake /tmp/lake1 [--config configs/nyc.yaml] [--epochs 6]
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcit.config import load_config  # noqa: E402
from simcit.lake import Lake  # noqa: E402
from simcit.train.view_batches import VIEW_COLUMNS  # noqa: E402

VIEWS = ["text", "geo", "cf"]


def export_npz(lake: Lake, path: str) -> int:
    """item_features -> .npz, one [N, d] float32 array per view, NaN rows where the view is null
    (the input format of benchmarks/tokenizer_models.py)."""
    table = lake.dataset("item_features").to_table(columns=[VIEW_COLUMNS[v] for v in VIEWS])
    arrays = {}
    for view in VIEWS:
        col = table.column(VIEW_COLUMNS[view]).combine_chunks()
        valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        dim = len(col.filter(col.is_valid())[0].as_py())
        x = np.full((len(col), dim), np.nan, dtype=np.float32)
        x[valid] = col.filter(col.is_valid()).flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        arrays[view] = x
    np.savez(path, **arrays)
    return table.num_rows


def single_process(npz: str, seconds: float, threads: int) -> float:
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "tokenizer_models.py"), "--features", npz,
                          "--seconds", str(seconds), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    print("   ", out.strip())
    return float(re.search(r"throughput: ([\d,]+) items/s", out).group(1).replace(",", ""))


def ray_train(config: str, lake: Lake, workers: int, epochs: int) -> dict:
    from simcit.train.trainer import train_tokenizer

    cpus = 2 // workers if workers <= 2 else 1
    cfg = load_config(config, [f"tokenizer.views={VIEWS}", "tokenizer.levels=3", "tokenizer.codebook_size=256",
                               "tokenizer.batch_size=256", f"tokenizer.epochs={epochs}",
                               f"tokenizer.num_workers={workers}", f"tokenizer.cpus_per_worker={cpus}",
                               "tokenizer.strategy=ddp", "tokenizer.checkpoints_to_keep=1"])
    t0 = time.time()
    outcome = train_tokenizer(cfg, lake, log=lambda m: print(f"    {m}", flush=True))
    steady = outcome.metrics["epochs"][1:] or outcome.metrics["epochs"]
    median = lambda key: float(np.median([r[key] for r in steady]))  # noqa: E731  (robust to stalls)
    return {"workers": workers, "threads": cpus, "wall": median("items_per_s"),
            "compute": median("compute_items_per_s"), "seconds": time.time() - t0,
            "valid_loss": outcome.metrics["best_valid_loss"], "items": steady[-1]["train_items"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", required=True, help="lake holding <namespace>/item_features (read only)")
    ap.add_argument("--config", default=str(REPO / "configs" / "nyc.yaml"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=20.0, help="single-process timed duration")
    ap.add_argument("--workers", default="1,2", help="Ray Train worker counts")
    args = ap.parse_args()

    namespace = load_config(args.config).namespace
    source = Lake(args.lake, namespace)
    with tempfile.TemporaryDirectory(prefix="simcit-bench-") as scratch:
        lake = Lake(scratch, namespace)
        lake.write_table("item_features", source.dataset("item_features").to_table())
        npz = os.path.join(scratch, "features.npz")
        n = export_npz(lake, npz)
        print(f"{namespace} item_features: {n:,} items; views {VIEWS}; L=3 K=256 batch 256")

        print("1. single process, no Ray (benchmarks/tokenizer_models.py):")
        single = {t: single_process(npz, args.seconds, t) for t in (1, 2)}

        from simcit.train.ray_runtime import connect_ray

        connect_ray(None, 3, log=lambda m: None)  # one local Ray for all runs (start-up not timed)
        runs = []
        for workers in [int(w) for w in args.workers.split(",")]:
            print(f"2. Ray Train, {workers} worker(s):")
            runs.append(ray_train(args.config, lake, workers, args.epochs))

    print()
    print(f"| setup | workers x threads | items/s (steady, wall) | items/s (compute only) | run s |")
    print(f"|---|---|---|---|---|")
    for threads, value in single.items():
        print(f"| single process, no Ray | 1 x {threads} | {value:,.0f} | {value:,.0f} | {args.seconds:.0f} (timed) |")
    for r in runs:
        print(f"| Ray Train DDP ({r['items']:,} train items/epoch, {args.epochs} epochs) | {r['workers']} x "
              f"{r['threads']} | {r['wall']:,.0f} | {r['compute']:,.0f} | {r['seconds']:.0f} |")
    if any(math.isnan(r["wall"]) for r in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
