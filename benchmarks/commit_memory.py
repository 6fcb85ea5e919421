"""Memory and time of ``Lake.commit_parquet`` on a large staged ``item_features`` output (not a test).

Generates N rows of the ``item_features`` schema (item ids, random float32 embeddings of the real
dims: text 384, geo 64, cf 64 with ~5% null; image null; H3 cells) as F Parquet files laid out
like Spark's output (``part-*.snappy.parquet``, ``_SUCCESS``; columns nullable, no Arrow schema in
the footer). The files are written one batch at a time, in a child process, so the measuring
process never held the data. Then it times one ``commit_parquet`` (a new table) and samples this
process's RSS every 5 ms in a thread during the commit.

    .venv/bin/python benchmarks/commit_memory.py                          # 1,000,000 rows, zero-copy
    .venv/bin/python benchmarks/commit_memory.py --rows 200000 --path arrow
    .venv/bin/python benchmarks/commit_memory.py --rows 200000 --workdir /tmp/cm   # keeps the files for the next run

``--path zero-copy`` (default) is the normal path (footers checked, files renamed into the table,
one commit of add actions); ``--path arrow`` forces the streaming fallback (``write_deltalake``).
Prints a markdown table row:
| path | rows | files | staged MiB | commit s | RSS before MiB | peak RSS MiB | peak - before MiB | ru_maxrss MiB |
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DIMS = {"text_emb": 384, "geo_emb": 64, "cf_emb": 64}
NULL_FRACTION = {"cf_emb": 0.05}
BATCH_ROWS = 4096


def _spark_like(schema):
    """Spark writes every top-level column nullable and no ``ARROW:schema`` footer entry."""
    import pyarrow as pa

    return pa.schema([f.with_nullable(True) for f in schema])


def _batch(start: int, n: int, rng):
    import numpy as np
    import pyarrow as pa

    from simcit.schemas import ITEM_FEATURES

    schema = _spark_like(ITEM_FEATURES)
    cols = {"item_id": pa.array([f"poi-{i:09d}" for i in range(start, start + n)], pa.string())}
    for name, field in zip(schema.names, schema):
        if name == "item_id":
            continue
        if name in DIMS:
            d = DIMS[name]
            values = pa.array(rng.standard_normal(n * d, dtype=np.float32))
            offsets = pa.array(np.arange(0, (n + 1) * d, d, dtype=np.int32))
            mask = None
            if name in NULL_FRACTION:
                mask = pa.array(rng.random(n) < NULL_FRACTION[name])
            cols[name] = pa.ListArray.from_arrays(offsets, values, type=field.type, mask=mask)
        elif name == "image_emb":
            cols[name] = pa.nulls(n, field.type)
        else:  # h3_r7 / r8 / r9: 15 hex characters like real cells
            res = int(name[-1])
            cols[name] = pa.array([f"8{res:x}2a1{(i * 2654435761) % 16**9:09x}f" for i in range(start, start + n)])
    return pa.RecordBatch.from_arrays([cols[n_] for n_ in schema.names], schema=schema)


def generate(out_dir: str, rows: int, files: int, seed: int = 0) -> None:
    """Write ``rows`` rows as ``files`` Parquet files, streaming (one batch in memory)."""
    import numpy as np
    import pyarrow.parquet as pq

    from simcit.schemas import ITEM_FEATURES

    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    schema = _spark_like(ITEM_FEATURES)
    per_file = -(-rows // files)
    start = 0
    for f in range(files):
        n_file = min(per_file, rows - start)
        if n_file <= 0:
            break
        path = os.path.join(out_dir, f"part-{f:05d}-bench-c000.snappy.parquet")
        with pq.ParquetWriter(path, schema, compression="snappy", store_schema=False) as writer:
            end = start + n_file
            while start < end:
                n = min(BATCH_ROWS, end - start)
                writer.write_batch(_batch(start, n, rng), row_group_size=128 * 1024)
                start += n
    open(os.path.join(out_dir, "_SUCCESS"), "w").close()
    with open(os.path.join(out_dir, "_ROWS"), "w") as fh:
        fh.write(str(rows))


def _rss_sampler(stop: threading.Event, peak: list, interval: float = 0.005) -> None:
    import psutil

    proc = psutil.Process()
    while not stop.is_set():
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(interval)
    peak[0] = max(peak[0], proc.memory_info().rss)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--path", choices=["zero-copy", "arrow"], default="zero-copy")
    ap.add_argument("--workdir", default=None,
                    help="where the generated files (kept, reused by the next run with the same --rows/--files) and the lake go")
    ap.add_argument("--keep", action="store_true", help="keep the committed lake as well")
    args = ap.parse_args(argv)

    import psutil

    workdir = args.workdir or tempfile.mkdtemp(prefix="commit_memory-")
    source = os.path.join(workdir, f"source-{args.rows}-{args.files}")
    marker = os.path.join(source, "_ROWS")
    if not (os.path.exists(marker) and open(marker).read() == str(args.rows)):
        shutil.rmtree(source, ignore_errors=True)
        t = time.time()
        child = mp.get_context("spawn").Process(target=generate, args=(source, args.rows, args.files))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"generation failed ({child.exitcode})")
        print(f"generated {args.rows:,} rows in {args.files} files in {time.time() - t:.1f}s", file=sys.stderr)

    from simcit import lake as lake_mod
    from simcit.lake import Lake

    lake_root = os.path.join(workdir, f"lake-{args.path}")
    shutil.rmtree(lake_root, ignore_errors=True)
    lake = Lake(lake_root, "bench")
    staging = lake.new_staging_dir("item_features", "benchrun")
    os.makedirs(staging)
    staged_bytes = 0
    for name in os.listdir(source):  # hard links: the commit consumes them, the source stays
        if name == "_ROWS":
            continue
        os.link(os.path.join(source, name), os.path.join(staging, name))
        staged_bytes += os.path.getsize(os.path.join(source, name))

    if args.path == "arrow":
        def no_zero_copy(self, *a, **k):
            raise lake_mod._StreamInstead("forced by the benchmark")

        Lake._commit_files = no_zero_copy

    before = psutil.Process().memory_info().rss
    peak = [before]
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(stop, peak), daemon=True)
    sampler.start()
    t = time.perf_counter()
    result = lake.commit_parquet("item_features", staging, metadata={"simcit.run_id": "benchrun"})
    seconds = time.perf_counter() - t
    stop.set()
    sampler.join()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    if result.rows != args.rows or lake.dataset("item_features").count_rows() != args.rows:
        raise SystemExit(f"row count mismatch: {result.rows} committed, {args.rows} generated")
    mib = 2**20
    print(
        "| path | rows | files | staged MiB | commit s | RSS before MiB | peak RSS MiB | peak - before MiB | ru_maxrss MiB |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    print(
        f"| {args.path} | {args.rows:,} | {args.files} | {staged_bytes / mib:,.0f} | {seconds:.2f} | "
        f"{before / mib:,.0f} | {peak[0] / mib:,.0f} | {(peak[0] - before) / mib:,.0f} | {maxrss / mib:,.0f} |"
    )
    if not args.keep:
        shutil.rmtree(lake_root, ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
