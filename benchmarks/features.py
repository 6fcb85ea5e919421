"""Benchmark of the ``features`` job: NYC and a synthetic 200k-POI catalogue (not a test).

Measures, in one run on one machine:
  * the bare text-encoder throughput (MiniLM, one process, all cores, no Spark), on texts of
    the synthetic catalogue;
  * the features job end to end (items/s), per view (geo, cf, text+write seconds), and peak
    memory of the Python driver, the JVM (driver + executors in local mode) and the Spark
    Python workers, sampled every 0.25 s over the whole process tree.
The target: job throughput >= 80% of the bare encoder's, driver memory flat in the catalogue size.

    .venv/bin/python benchmarks/features.py                 # NYC + 200k synthetic
    .venv/bin/python benchmarks/features.py --items 50000   # smaller synthetic catalogue
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
PY = sys.executable
SIMCIT = str(Path(PY).parent / "simcit")


def sample_tree(pid: int, stop: threading.Event, peaks: dict) -> None:
    """Peak RSS (MiB) per role: python driver, JVM, Spark Python workers (sum and largest)."""
    root = psutil.Process(pid)
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            driver = jvm = workers = biggest = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss / 2**20
                    name = p.name()
                except psutil.Error:
                    continue
                if p.pid == pid:
                    driver = rss
                elif name.startswith("java"):
                    jvm += rss
                elif "python" in name:
                    workers += rss
                    biggest = max(biggest, rss)
            for key, value in (("driver_mib", driver), ("jvm_mib", jvm), ("workers_mib", workers), ("largest_worker_mib", biggest)):
                peaks[key] = max(peaks.get(key, 0), value)
        except psutil.Error:
            pass
        time.sleep(0.25)


def run_stage(stage: str, config: Path, lake: Path, log: Path, env: dict | None = None) -> dict:
    peaks: dict = {}
    stop = threading.Event()
    t0 = time.time()
    with log.open("w") as fh:
        proc = subprocess.Popen([SIMCIT, stage, "--config", str(config), "--lake", str(lake)], stdout=subprocess.PIPE,
                                stderr=fh, text=True, env={**os.environ, **(env or {})})
        sampler = threading.Thread(target=sample_tree, args=(proc.pid, stop, peaks), daemon=True)
        sampler.start()
        out, _ = proc.communicate()
    stop.set()
    sampler.join()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{stage} failed, see {log}")
    summary = next(line for line in out.splitlines() if "SUMMARY" in line)
    fields = dict(re.findall(r"(\w+)=([\d.,]+)", summary))
    return {"wall_s": wall, "summary": summary, **{k: float(v.replace(",", "")) for k, v in fields.items()}, **peaks}


BARE_ENCODER = r"""
import json, sys, time, torch, pyarrow.dataset as ds
from deltalake import DeltaTable
from simcit.encoders import text_encoder
torch.set_num_threads(int(sys.argv[3]))
table = DeltaTable(sys.argv[1]).to_pyarrow_dataset()
texts = [t for t in table.head(int(sys.argv[2]), columns=["text"]).column("text").to_pylist() if t]
text_encoder.encode(texts[:256], 128)  # warm-up: weights, allocator, kernels
t = time.time(); text_encoder.encode(texts, 128); dt = time.time() - t
print(json.dumps({"texts": len(texts), "seconds": dt, "texts_per_s": len(texts) / dt}))
"""


def bare_encoder(items_table: Path, n: int) -> dict:
    out = subprocess.run(
        [PY, "-c", BARE_ENCODER, str(items_table), str(n), str(os.cpu_count())], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def config_for(name: str, items: str, interactions: str) -> Path:
    import yaml

    data = yaml.safe_load((REPO / "configs" / "nyc.yaml").read_text())
    data["namespace"] = name
    data["dataset"]["items"], data["dataset"]["interactions"] = items, interactions
    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--lake", type=Path, default=WORK / "lake")
    ap.add_argument("--bare-texts", type=int, default=8000)
    ap.add_argument("--reuse-ingest", action="store_true", help="skip ingest when the tables exist")
    ap.add_argument("--skip-nyc", action="store_true")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO / "benchmarks"))
    from synthetic_catalogue import build

    results: dict = {"machine": {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)}}
    runs = []
    if not args.skip_nyc:
        runs.append(("nyc_bench", str(REPO / "data/foursquare_nyc/pois.csv.gz"), str(REPO / "data/foursquare_nyc/checkins.csv.gz")))
    synth_name = f"synth{args.items // 1000}k"
    synth_dir = WORK / synth_name
    if not (synth_dir / "pois.csv.gz").exists():
        print(f"building the synthetic catalogue ({args.items:,} POIs)", flush=True)
        build(args.items, synth_dir)
    runs.append((synth_name, str(synth_dir / "pois.csv.gz"), str(synth_dir / "checkins_parquet")))

    for name, items, interactions in runs:
        cfg = config_for(name, items, interactions)
        if not (args.reuse_ingest and (args.lake / name / "items" / "_delta_log").exists()):
            print(f"[{name}] ingest (setup, not measured)", flush=True)
            run_stage("ingest", cfg, args.lake, WORK / f"{name}_ingest.log")
        print(f"[{name}] features", flush=True)
        results[name] = run_stage("features", cfg, args.lake, WORK / f"{name}_features.log")
        print(json.dumps(results[name], indent=1), flush=True)

    print("bare text encoder", flush=True)
    results["bare_encoder"] = bare_encoder(args.lake / synth_name / "items", args.bare_texts)
    bare = results["bare_encoder"]["texts_per_s"]
    print(f"\n| catalogue | items | wall s | items/s | vs bare encoder | geo s | cf s | text+write s | driver MiB | JVM MiB | workers MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, *_ in runs:
        r = results[name]
        items_per_s = r["rows_out"] / r["wall_s"]
        r["items_per_s"], r["ratio_to_bare"] = items_per_s, items_per_s / bare
        print(
            f"| {name} | {int(r['rows_out']):,} | {r['wall_s']:.0f} | {items_per_s:.0f} | {items_per_s / bare:.0%} | "
            f"{r.get('geo_s', 0):.0f} | {r.get('cf_s', 0):.0f} | {r.get('text_and_write_s', 0):.0f} | "
            f"{r['driver_mib']:.0f} | {r['jvm_mib']:.0f} | {r['workers_mib']:.0f} |"
        )
    print(f"\nbare text encoder: {bare:.0f} texts/s ({results['bare_encoder']['texts']:,} texts, {os.cpu_count()} threads)")
    (WORK / "features_results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
