"""Benchmark of the ``assign-ids`` stage against the bare tokenizer forward pass (not a test).

Why: issue #3's target is that ``assign-ids`` (Spark Python workers read ``item_features``' row
groups and run the tokenizer per Arrow batch, their packed codes stream into a Spark window that
disambiguates collisions, the driver commits ``semantic_ids``) reaches >= 50% of the throughput of the bare forward pass, with
flat driver memory (the Python driver's RSS must not grow with the number of rows).

What it does, for each size N of ``--items`` (one namespace ``assign_<N>`` per size in ``--lake``):
  1. writes a synthetic ``item_features`` Delta table of N rows (canonical schema, streamed in
     Arrow batches through ``Lake.write_batches``, committed in chunks of ``--chunk-rows`` so
     nothing ever holds the table). Views text / geo / cf with the dims the config gives the
     features stage (384 / ``features.geo.dim`` / ``features.cf.dim``), float32, L2-normalised,
     from a mixture of Gaussians: a skewed "category" cluster drives text, a skewed "place"
     cluster drives geo, both drive cf; ``--cf-missing`` of the items have no cf view (items
     absent from training sequences). ``--reuse`` keeps a table that already has N rows;
     otherwise the namespace folder (a benchmark-only name) is deleted and rewritten;
  2. builds a SimCIT tokenizer from the config's ``tokenizer`` section (defaults: L=3, K=256,
     D=128), NOT TRAINED: random weights (fixed seed) and, unless ``--init random``, codebooks
     set by the model's own residual k-means on a sample of ``tokenizer.sample_size`` rows. The
     forward pass costs the same trained or not; only the code spread (unique ratio, collision
     groups) differs from a trained model. The same weights are saved (``save_tokenizer``) under
     every namespace's model root, and the stage is pointed at it (``assign_ids.model_dir``);
  3. bare forward: in this process, no Spark, the table read back in Arrow batches of the
     stage's size (``spark.arrow_batch_rows``), timing separately: reading, Arrow -> ViewBatch
     conversion (what a Spark worker also does), and the model's ``codes(...)`` (the "bare
     forward", compute only). Once per torch thread count of ``--threads`` (default: all cores,
     then 1: on a 2-core machine shared with other jobs, 2 OpenMP threads can stall 4-8x); the
     stage is compared with the best of them;
  4. runs ``simcit assign-ids`` in a subprocess (previous ``semantic_ids`` removed first, so every
     run codes all N items from scratch) and samples, every 0.25 s, peak RSS of the Python
     driver, the JVM and the Spark Python workers (``benchmarks/features.py``'s ``run_stage``).
     The embedded JVM starts from its class archive (``simcit/jvm_class_archive.py``), built
     first if missing, as on any installation after its first Spark job; ``--cold-jvm`` also
     runs the stage without it (what the very first run of an installation costs);
  5. prints one markdown row per size and the driver peak across sizes (flatness).

Stage items/s = N / end-to-end wall (subprocess start to exit: Spark start-up included, which
dominates at small N). Results also go to ``benchmarks/_work/assign_ids_results.json``; the
stage's log to ``benchmarks/_work/assign_<N>_assign-ids.log``.

    .venv/bin/python benchmarks/assign_ids.py                                  # 1M rows
    .venv/bin/python benchmarks/assign_ids.py --items 100000,1000000 --reuse   # flatness check
    .venv/bin/python benchmarks/assign_ids.py --items 20000                    # smoke run

Disk: about 2 GB per million rows for ``item_features`` (random floats do not compress).
The stage runs as configured (``spark.master`` local[2]: two Python workers, each with
``SIMCIT_WORKER_THREADS`` torch threads, default 1; set it in the environment to change it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import yaml

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from features import run_stage  # noqa: E402  (benchmarks/features.py: stage subprocess + RSS sampler)

from simcit.config import PipelineConfig, load_config  # noqa: E402
from simcit.encoders.text_encoder import TEXT_DIM  # noqa: E402
from simcit.lake import Lake  # noqa: E402
from simcit.schemas import EMB, ITEM_FEATURES  # noqa: E402

EMB_COLUMNS = {"text": "text_emb", "geo": "geo_emb", "cf": "cf_emb"}
LATENT = 16  # dims of each cluster's latent (before the fixed random map to each view)


def view_dims(cfg: PipelineConfig) -> dict[str, int]:
    """Embedding dims of the views the tokenizer reads, as the features stage writes them."""
    dims = {"text": TEXT_DIM, "geo": cfg.features.geo.dim, "cf": cfg.features.cf.dim}
    unknown = [v for v in cfg.tokenizer.views if v not in dims]
    if unknown:
        raise SystemExit(f"this benchmark generates text/geo/cf only; tokenizer.views also has {unknown}")
    return {v: dims[v] for v in cfg.tokenizer.views}


# ---- 1. synthetic item_features ------------------------------------------------------------
class MixtureGenerator:
    """Batches of clustered, L2-normalised embeddings (deterministic for a seed)."""

    def __init__(self, dims: dict[str, int], seed: int, categories: int = 512, places: int = 2048,
                 cf_missing: float = 0.1):
        rng = np.random.default_rng(seed)
        self.dims, self.cf_missing = dims, cf_missing
        # Skewed cluster sizes (a few big categories / dense places, a long tail).
        self.cat_p = rng.dirichlet(np.full(categories, 0.5))
        self.place_p = rng.dirichlet(np.full(places, 0.5))
        self.cat_mu = rng.normal(size=(categories, LATENT)) * 2.0
        self.place_mu = rng.normal(size=(places, LATENT)) * 2.0
        # view -> (weight of the category latent, weight of the place latent, fixed random map)
        mix = {"text": (1.0, 0.15), "geo": (0.0, 1.0), "cf": (0.7, 0.7)}
        self.maps = {view: (*mix[view], rng.normal(size=(LATENT, dim)) / np.sqrt(LATENT))
                     for view, dim in dims.items()}
        self.seed = seed

    def batch(self, start: int, n: int) -> pa.RecordBatch:
        rng = np.random.default_rng([self.seed, start])
        cat = self.cat_mu[rng.choice(len(self.cat_p), n, p=self.cat_p)] + 0.5 * rng.normal(size=(n, LATENT))
        place = self.place_mu[rng.choice(len(self.place_p), n, p=self.place_p)] + 0.5 * rng.normal(size=(n, LATENT))
        columns: dict[str, pa.Array] = {"item_id": pa.array([f"item{i:09d}" for i in range(start, start + n)])}
        for view, dim in self.dims.items():
            w_cat, w_place, proj = self.maps[view]
            x = ((w_cat * cat + w_place * place) @ proj).astype(np.float32)
            x += 0.3 * rng.standard_normal((n, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            mask = pa.array(rng.random(n) < self.cf_missing) if view == "cf" and self.cf_missing > 0 else None
            offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
            columns[EMB_COLUMNS[view]] = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)), type=EMB, mask=mask)
        for name in ITEM_FEATURES.names:
            if name not in columns:  # image_emb, h3_r7..9: not read by assign-ids
                columns[name] = pa.nulls(n, ITEM_FEATURES.field(name).type)
        return pa.RecordBatch.from_arrays([columns[f.name] for f in ITEM_FEATURES], schema=ITEM_FEATURES)


def write_item_features(lake: Lake, n: int, gen: MixtureGenerator, chunk_rows: int, batch_rows: int = 8192) -> float:
    """N rows as one Delta table, one commit per ``chunk_rows`` (bounds the writer's buffering)."""
    t0 = time.time()
    for c, start in enumerate(range(0, n, chunk_rows)):
        stop = min(n, start + chunk_rows)
        batches = (gen.batch(s, min(batch_rows, stop - s)) for s in range(start, stop, batch_rows))
        lake.write_batches("item_features", batches, mode="overwrite" if c == 0 else "append",
                           metadata={"simcit.run_id": "benchmark-assign-ids-synthetic"})
        print(f"    {stop:,}/{n:,} rows ({time.time() - t0:.0f} s)", flush=True)
    return time.time() - t0


def table_rows(lake: Lake) -> int:
    return lake.dataset("item_features").count_rows() if lake.exists("item_features") else -1


# ---- 2. tokenizer ------------------------------------------------------------------------
def build_model(cfg: PipelineConfig, lake: Lake, dims: dict[str, int], init: str):
    import torch

    from simcit.tokenizer import build_tokenizer
    from simcit.train.model_config import tokenizer_model_config
    from simcit.train.view_batches import has_any_view, to_view_batch

    if cfg.tokenizer.kind != "simcit":
        raise SystemExit(f"tokenizer.kind is {cfg.tokenizer.kind!r}; this benchmark builds SimCIT")
    model = build_tokenizer("simcit", tokenizer_model_config(cfg.tokenizer, dims))
    model.eval()
    if init == "kmeans":
        columns = [EMB_COLUMNS[v] for v in dims]
        sample = lake.dataset("item_features").head(cfg.tokenizer.sample_size, columns=columns)
        sample = sample.filter(pa.array(has_any_view(sample, list(dims))))
        t0 = time.time()
        with torch.inference_mode():
            model.init_codebooks(to_view_batch(sample, dims))
        print(f"    k-means codebook init on {sample.num_rows:,} rows: {time.time() - t0:.1f} s", flush=True)
    return model


# ---- 3. bare forward -------------------------------------------------------------------------
def exact_batches(batches, size: int):
    """Re-chunk a stream of record batches into batches of exactly ``size`` rows (last: fewer)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for b in batches:
        while b.num_rows:
            take = min(size - held, b.num_rows)
            pending.append(b.slice(0, take))
            held += take
            b = b.slice(take)
            if held == size:
                yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]
                pending, held = [], 0
    if held:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def bare_forward(lake: Lake, model_dir: str, batch_rows: int, threads: int) -> dict:
    """What a Spark worker computes per batch, in one process, no Spark: read / convert / codes."""
    import torch

    from simcit.train.model_store import load_tokenizer
    from simcit.train.view_batches import has_any_view, to_view_batch

    torch.set_num_threads(threads)
    model, meta = load_tokenizer(model_dir, verify=False)
    dims = dict(meta["views"])
    columns = ["item_id", *[EMB_COLUMNS[v] for v in dims]]
    it = exact_batches(lake.dataset("item_features").to_batches(columns=columns, batch_size=batch_rows), batch_rows)
    read_s = convert_s = forward_s = 0.0
    items = coded = 0
    warm = False
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        t1 = time.perf_counter()
        if batch is None:
            break
        usable = has_any_view(batch, list(dims))  # as the stage's worker does (spark_inference)
        sub = batch.filter(pa.array(usable)) if not usable.all() else batch
        vb = to_view_batch(sub, dims)
        t2 = time.perf_counter()
        with torch.inference_mode():
            if not warm:  # one untimed call: first-call allocations and kernel selection
                model.codes(vb)
                warm = True
            t3 = time.perf_counter()
            codes = model.codes(vb).numpy()
        t4 = time.perf_counter()
        read_s, convert_s, forward_s = read_s + t1 - t0, convert_s + t2 - t1, forward_s + t4 - t3
        items += batch.num_rows
        coded += len(codes)
    return {"items": items, "coded": coded, "batch_rows": batch_rows, "threads": threads,
            "read_s": read_s, "convert_s": convert_s, "forward_s": forward_s,
            "read_items_per_s": items / read_s, "forward_items_per_s": coded / forward_s,
            "convert_and_forward_items_per_s": coded / (convert_s + forward_s)}


# ---- 4. the stage ----------------------------------------------------------------------------
def stage_config(base: Path, namespace: str, model_dir: str) -> Path:
    """``base`` with the benchmark's namespace and model; dataset paths made absolute (the copy
    lives in benchmarks/_work, and relative paths resolve against the YAML's folder)."""
    cfg = load_config(base)
    data = yaml.safe_load(base.read_text())
    data["namespace"] = namespace
    data["dataset"]["items"] = cfg.resolve(cfg.dataset.items)
    data["dataset"]["interactions"] = cfg.resolve(cfg.dataset.interactions)
    data.setdefault("assign_ids", {})["model_dir"] = model_dir
    path = WORK / f"{namespace}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", default="1000000", help="row counts, comma-separated (e.g. 100000,1000000)")
    ap.add_argument("--lake", type=Path, default=WORK / "assign_lake")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "nyc.yaml")
    ap.add_argument("--reuse", action="store_true", help="keep an item_features table that already has N rows")
    ap.add_argument("--init", choices=("kmeans", "random"), default="kmeans", help="codebook init (no training)")
    ap.add_argument("--threads", default=f"{os.cpu_count()},1",
                    help="torch thread counts of the bare forward, comma-separated (default: all cores, then 1)")
    ap.add_argument("--chunk-rows", type=int, default=50_000, help="rows per Delta commit when generating")
    ap.add_argument("--cf-missing", type=float, default=0.1, help="fraction of items without a cf view")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-stage", action="store_true", help="data + bare forward only")
    ap.add_argument("--cold-jvm", action="store_true",
                    help="also run the stage without the JVM class archive (SIMCIT_JVM_CLASS_ARCHIVE=0)")
    args = ap.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.items.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    WORK.mkdir(parents=True, exist_ok=True)

    cfg = load_config(args.config)
    dims = view_dims(cfg)
    batch_rows = cfg.spark.arrow_batch_rows
    gen = MixtureGenerator(dims, args.seed, cf_missing=args.cf_missing)
    results: dict = {"machine": {"cpus": os.cpu_count(), "ram_gib": round(psutil.virtual_memory().total / 2**30, 1)},
                     "views": dims, "init": args.init, "trained": False, "runs": []}
    print(f"views {dims}; tokenizer {cfg.tokenizer.kind} L={cfg.tokenizer.levels} K={cfg.tokenizer.codebook_size} "
          f"D={cfg.tokenizer.latent_dim}, UNTRAINED (random weights, {args.init} codebooks); "
          f"stage batch {batch_rows} rows, spark {cfg.spark.master}, worker torch threads "
          f"{os.environ.get('SIMCIT_WORKER_THREADS', '1')}", flush=True)

    if not args.skip_stage:  # the state of any installation after its first Spark job
        import subprocess

        built = subprocess.run([sys.executable, "-m", "simcit.jvm_class_archive"], capture_output=True, text=True)
        results["class_archive"] = (built.stdout.strip().splitlines() or ["?"])[-1]
        print(f"{results['class_archive']}", flush=True)

    model = saved_dir = None
    for n in sizes:
        namespace = f"assign_{n}"
        lake = Lake(args.lake, namespace)
        if args.reuse and table_rows(lake) == n:
            print(f"[{namespace}] reusing item_features ({n:,} rows)", flush=True)
            gen_s = None
        else:
            shutil.rmtree(Path(lake.root) / namespace, ignore_errors=True)
            shutil.rmtree(Path(lake.root) / "_staging" / namespace, ignore_errors=True)
            print(f"[{namespace}] writing item_features ({n:,} rows, setup, not measured)", flush=True)
            gen_s = write_item_features(lake, n, gen, args.chunk_rows)

        from simcit.train.model_store import save_tokenizer, tokenizer_models_root

        if model is None:  # one model for every size: built on the first size's table
            model = build_model(cfg, lake, dims, args.init)
        saved = save_tokenizer(model, tokenizer_models_root(lake), extra={
            "benchmark": f"benchmarks/assign_ids.py: untrained, random weights + {args.init} codebooks"})
        saved_dir = saved.model_dir
        print(f"[{namespace}] tokenizer {saved.tokenizer_version} at {saved_dir}", flush=True)

        bares = []
        for threads in thread_counts:
            print(f"[{namespace}] bare forward ({threads} torch threads, batches of {batch_rows}; "
                  f"load avg {os.getloadavg()[0]:.1f})", flush=True)
            b = bare_forward(lake, saved_dir, batch_rows, threads)
            print(f"    read {b['read_s']:.1f} s, convert {b['convert_s']:.1f} s, codes() {b['forward_s']:.1f} s "
                  f"-> {b['forward_items_per_s']:,.0f} items/s (compute only)", flush=True)
            bares.append(b)
        bare = max(bares, key=lambda b: b["forward_items_per_s"])
        run = {"items": n, "namespace": namespace, "generate_s": gen_s, "bare": bare, "bare_by_threads": bares}
        if not args.skip_stage:
            shutil.rmtree(lake.table_path("semantic_ids"), ignore_errors=True)  # no refresh path: code all N
            shutil.rmtree(lake.table_path("rejects"), ignore_errors=True)
            config = stage_config(args.config, namespace, saved_dir)
            print(f"[{namespace}] assign-ids stage (load avg {os.getloadavg()[0]:.1f})", flush=True)
            stage = run_stage("assign-ids", config, args.lake, WORK / f"{namespace}_assign-ids.log")
            stage["items_per_s"] = n / stage["wall_s"]
            stage["ratio_to_bare"] = stage["items_per_s"] / bare["forward_items_per_s"]
            print(f"    {stage['summary']}", flush=True)
            run["stage"] = stage
            if args.cold_jvm:
                shutil.rmtree(lake.table_path("semantic_ids"), ignore_errors=True)
                print(f"[{namespace}] assign-ids stage, no JVM class archive (load avg {os.getloadavg()[0]:.1f})",
                      flush=True)
                cold = run_stage("assign-ids", config, args.lake, WORK / f"{namespace}_assign-ids-cold-jvm.log",
                                 env={"SIMCIT_JVM_CLASS_ARCHIVE": "0"})
                cold["items_per_s"] = n / cold["wall_s"]
                cold["ratio_to_bare"] = cold["items_per_s"] / bare["forward_items_per_s"]
                run["stage_cold_jvm"] = cold
        results["runs"].append(run)
        (WORK / "assign_ids_results.json").write_text(json.dumps(results, indent=1))

    print(f"\nuntrained SimCIT (random weights, {args.init} codebooks), views {dims}; bare forward: one "
          f"process, best of {thread_counts} torch threads, batches of {batch_rows}; load avg now "
          f"{os.getloadavg()[0]:.1f}")
    print("\n| items | stage wall s | stage items/s | bare forward items/s (compute only) | stage / bare | "
          "driver peak MiB | JVM peak MiB | workers peak MiB (sum) | unique before disamb. | largest group |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results["runs"]:
        b, s = r["bare"], r.get("stage")
        if s is None:
            print(f"| {r['items']:,} | – | – | {b['forward_items_per_s']:,.0f} | – | – | – | – | – | – |")
            continue
        print(f"| {r['items']:,} | {s['wall_s']:.0f} | {s['items_per_s']:,.0f} | {b['forward_items_per_s']:,.0f} "
              f"({b['threads']} thr) | "
              f"{s['ratio_to_bare']:.0%} | {s.get('driver_mib', 0):,.0f} | {s.get('jvm_mib', 0):,.0f} | "
              f"{s.get('workers_mib', 0):,.0f} | {s.get('unique_before', float('nan')):.4f} | "
              f"{s.get('largest_group', 0):.0f} |")
        c = r.get("stage_cold_jvm")
        if c is not None:
            print(f"| {r['items']:,} (no JVM class archive) | {c['wall_s']:.0f} | {c['items_per_s']:,.0f} | "
                  f"{b['forward_items_per_s']:,.0f} ({b['threads']} thr) | {c['ratio_to_bare']:.0%} | "
                  f"{c.get('driver_mib', 0):,.0f} | {c.get('jvm_mib', 0):,.0f} | {c.get('workers_mib', 0):,.0f} | "
                  f"{c.get('unique_before', float('nan')):.4f} | {c.get('largest_group', 0):.0f} |")
    print()
    for r in results["runs"]:
        for b in r["bare_by_threads"]:
            print(f"bare, {r['items']:,} rows, {b['threads']} thread(s): read {b['read_items_per_s']:,.0f} items/s "
                  f"({b['read_s']:.1f} s), convert+codes {b['convert_and_forward_items_per_s']:,.0f} items/s, "
                  f"codes only {b['forward_items_per_s']:,.0f} items/s ({b['forward_s']:.1f} s)")
    staged = [r for r in results["runs"] if "stage" in r]
    if len(staged) > 1:
        peaks = ", ".join(f"{r['items']:,} rows: {r['stage'].get('driver_mib', 0):,.0f} MiB" for r in staged)
        growth = staged[-1]["stage"].get("driver_mib", 0) - staged[0]["stage"].get("driver_mib", 0)
        print(f"driver peak RSS by size: {peaks} (growth {growth:+,.0f} MiB)")
    print(f"results: {WORK / 'assign_ids_results.json'}")


if __name__ == "__main__":
    main()
