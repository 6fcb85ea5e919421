"""Recommendation quality by tokenizer (issue #4, SPEC §6 claims 1-3): the same generative
recommender budget over SIDs from

  simcit        SimCIT, all views of the dataset (NYC: text + geo + cf; Scientific: text + cf)
  simcit_text   SimCIT, text view only
  rqvae         RQ-VAE, text view (as TIGER)
  rqkmeans      RQ-KMeans, text view

at equal L x K, plus the floors (MostPop, Markov-1 + repeat, ItemKNN; tuned on valid) and SASRec,
all on the same leave-one-out split of the bundled real data. Every tokenizer/recommender pair is
trained with 3 seeds (tokenizer seed = recommender seed); the table shows mean +- std over seeds,
collision figures of the SID tables, and training time. Paired differences on test Recall@10
(per user, averaged over seeds) say whether a gap is larger than its noise.

Everything runs through the real stages (train-tokenizer, assign-ids, train-recommender,
evaluate) in one process, sharing one local Ray and one Spark session:

    python benchmarks/quality.py --dataset nyc
    python benchmarks/quality.py --dataset scientific
    python benchmarks/quality.py --dataset nyc --seeds 0 --variants simcit,rqvae   # a quick look

Results: ``benchmarks/_work/quality-<dataset>.json`` (an earlier run's file is kept, renamed with
its time) and a markdown table on stdout (copied into benchmarks/RESULTS.md by hand, with the command).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from simcit.cli import run_stage  # noqa: E402
from simcit.config import load_config  # noqa: E402
from simcit.lake import Lake  # noqa: E402

CONFIGS = {"nyc": REPO / "configs" / "nyc.yaml", "scientific": REPO / "configs" / "scientific.yaml"}
ALL_VIEWS = {"nyc": ["text", "geo", "cf"], "scientific": ["text", "cf"]}
VARIANTS = {
    "simcit": ("simcit", None),
    "simcit_text": ("simcit", ["text"]),
    "rqvae": ("rqvae", ["text"]),
    "rqkmeans": ("rqkmeans", ["text"]),
}
# The recommender budget shared by every variant, on top of the dataset config (``--set`` adds to
# it). Sized so that 4 SID tables x 3 seeds + floors + SASRec fit about an hour on 2 cores: a
# 0.43M-parameter Qwen2, 20-item windows, early stopping on 300 valid users; evaluate ranks 2,000
# valid users (the copy prior's tuning users) and every test user.
_SMALL_LM = ["recommender.model={hidden_size: 128, num_layers: 2, num_heads: 4, intermediate_size: 256}",
             "recommender.window=20", "recommender.valid_users=300", "recommender.cpus_per_worker=2",
             "evaluate.valid_users=2000"]
BUDGET: dict[str, list[str]] = {
    "nyc": [*_SMALL_LM, "recommender.stride=20", "recommender.epochs=6", "recommender.patience=2"],
    "scientific": [*_SMALL_LM, "recommender.stride=10", "recommender.epochs=8", "recommender.patience=3",
                   "recommender.strategy=ddp"],
}
TABLE_KS = (5, 10, 20)


def _q(value: Any) -> str:
    return json.dumps(value)


def ensure_features(dataset: str, lake_root: str, config: str, log) -> None:
    lake = Lake(lake_root, load_config(config).namespace)
    for stage, table in (("ingest", "interactions"), ("features", "item_features"), ("sequences", "sequences")):
        if lake.exists(table):
            log(f"{table}: reusing v{lake.version(table)}")
        else:
            run_stage(stage, config, lake_root)


def run_variant(dataset: str, variant: str, seed: int, lake_root: str, config: str, extra: list[str], log) -> dict:
    kind, views = VARIANTS[variant]
    views = views or ALL_VIEWS[dataset]
    tag = f"{variant}_s{seed}"
    common = [f"tokenizer.seed={seed}", f"recommender.seed={seed}", f"assign_ids.table_tag={tag}", *extra]
    t0 = time.time()
    tok = run_stage("train-tokenizer", config, lake_root,
                    common + [f"tokenizer.kind={kind}", f"tokenizer.views={_q(views)}"])
    t_tok = time.time() - t0
    ids = run_stage("assign-ids", config, lake_root,
                    common + [f"tokenizer.kind={kind}", f"assign_ids.model_dir={_q(tok.extra['model_dir'])}"])
    t1 = time.time()
    rec = run_stage("train-recommender", config, lake_root, common)
    t_rec = time.time() - t1
    ev = run_stage("evaluate", config, lake_root, common + ["evaluate.baselines=[]"])
    return {
        "variant": variant, "seed": seed, "kind": kind, "views": views, "sid_table": f"semantic_ids__{tag}",
        "tokenizer_seconds": t_tok, "recommender_seconds": t_rec,
        "unique_before": float(ids.extra.get("unique_before", "nan")),
        "largest_group": int(ids.extra.get("largest_group", 0)),
        "best_epoch": rec.extra["best_epoch"], "valid_recall@10_es": rec.extra["valid_recall@10"],
        "eval_run_id": ev.extra["run_id"], "ranks": ev.extra["ranks"],
    }


def floors(lake_root: str, config: str, names: list[str], sasrec_seconds: float, log) -> list[dict]:
    """Floors and SASRec on the same split, through the evaluate stage's own fitting code."""
    from simcit.evaluation.metrics import metrics_from_ranks, ranks_from_scores
    from simcit.stages.evaluate import fit_floors, training_sequences
    from simcit.train.recommender_data import SplitRows, iter_sequence_batches, read_split

    cfg = load_config(config)
    lake = Lake(lake_root, cfg.namespace)
    items = lake.dataset("item_features").to_table(columns=["item_id"])["item_id"].to_pylist()
    train = training_sequences(lake)
    out, rank_tables = [], []
    for name in names:
        t0 = time.time()
        if name == "sasrec":
            from simcit.evaluation.baselines.sasrec import SASRec, SASRecConfig

            valid = read_split(lake, "valid")
            import pandas as pd

            frame = pd.DataFrame({"user_id": valid.user_ids, "split": "valid", "history": valid.histories,
                                  "target": valid.targets})
            model = SASRec(SASRecConfig(max_train_seconds=sasrec_seconds, num_threads=2)).fit(train, items,
                                                                                              valid=frame)
        else:
            model = fit_floors([name], train, items, read_split(lake, "valid", cfg.evaluate.tune_users), log)[name]
        fit_s = time.time() - t0
        index = {it: i for i, it in enumerate(model.item_ids)}
        for split in ("valid", "test"):
            ranks, users = [], []
            for batch in iter_sequence_batches(lake, split, batch_rows=512):
                part = SplitRows.from_batch(batch)
                targets = np.array([index.get(t, -1) for t in part.targets])
                ranks.append(ranks_from_scores(model.score(part.histories), targets))
                users += part.user_ids
            rank_tables.append(pa.table({"user_id": users, "split": [split] * len(users),
                                         "model": [name] * len(users), "rank": np.concatenate(ranks)}))
            per_user = metrics_from_ranks(np.concatenate(ranks))
            out.append({"model": name, "split": split, "seconds": fit_s,
                        **{k: float(np.mean(v)) for k, v in per_user.items()}})
        log(f"{name}: test R@10 {out[-1]['recall@10']:.4f} ({fit_s:.0f}s)")
    if rank_tables:  # per-user ranks, for paired comparisons with the generative rows
        pq.write_table(pa.concat_tables(rank_tables), floor_ranks_file(cfg.dataset.name))
    return out


REPEAT = "+repeat"  # evaluate's name suffix for the model mixed with the copy prior


def metrics_of(lake: Lake, run_id: str, repeat: bool = False) -> dict[str, dict[str, float]]:
    """Metrics of the generative model of an evaluate run (``repeat``: its +repeat row)."""
    import pyarrow.dataset as ds

    t = lake.dataset("eval_metrics").to_table(filter=ds.field("run_id") == run_id).to_pylist()
    out: dict[str, dict[str, float]] = {}
    for r in t:
        if r["model"].startswith("generative:") and r["model"].endswith(REPEAT) == repeat:
            out.setdefault(r["split"], {})[f"{r['metric']}@{r['k']}"] = r["value"]
    return out


def floor_ranks_file(dataset: str) -> Path:
    return REPO / "benchmarks" / "_work" / f"quality-{dataset}-floor-ranks.parquet"


def paired(runs: list[dict], a: str, b: str, dataset: str | None = None) -> dict | None:
    """Per-user test Recall@10 averaged over seeds, a - b, paired over users. A name is a
    variant ("simcit"), a variant with the copy prior ("simcit+repeat") or a floor ("markov")."""
    import pyarrow.parquet as pq

    from simcit.evaluation.metrics import paired_comparison

    def hits(name: str):
        variant, repeat = (name[: -len(REPEAT)], True) if name.endswith(REPEAT) else (name, False)
        per_seed = []
        if variant not in VARIANTS:
            path = floor_ranks_file(dataset) if dataset else None
            if path is None or not path.exists():
                return None
            t = pq.read_table(path).to_pandas()
            t = t[(t["split"] == "test") & (t["model"] == variant)].set_index("user_id")
            return None if t.empty else (t["rank"] <= 10).astype(float)
        for r in runs:
            if r["variant"] != variant:
                continue
            t = pq.read_table(r["ranks"]).to_pandas()
            model = t["model"]
            t = t[(t["split"] == "test") & model.str.startswith("generative:") & (model.str.endswith(REPEAT) == repeat)]
            if not t.empty:
                per_seed.append((t.set_index("user_id")["rank"] <= 10).astype(float))
        return None if not per_seed else sum(per_seed) / len(per_seed)

    ha, hb = hits(a), hits(b)
    if ha is None or hb is None:
        return None
    ha, hb = ha.align(hb, join="inner")
    c = paired_comparison(ha.to_numpy(), hb.to_numpy())
    return {"a": a, "b": b, "diff": c.diff, "se": c.se_diff, "z": c.z, "users": c.n}


def comparisons(runs: list[dict], floor_rows: list[dict], dataset: str) -> list[dict]:
    """SimCIT against each other SID table, and the best generative row against the best floor."""
    pairs = [("simcit", "rqvae"), ("simcit", "simcit_text"), ("simcit", "rqkmeans"),
             ("simcit" + REPEAT, "rqvae" + REPEAT)]
    tests = [f for f in floor_rows if f["split"] == "test"]
    if tests:
        best = max(tests, key=lambda f: f["recall@10"])["model"]
        pairs += [("simcit", best), ("simcit" + REPEAT, best)]
    return [c for c in (paired(runs, a, b, dataset) for a, b in pairs) if c]


def table(dataset: str, runs: list[dict], floor_rows: list[dict]) -> str:
    cols = [f"recall@{k}" for k in TABLE_KS] + [f"ndcg@{k}" for k in TABLE_KS]
    lines = ["| model | SIDs | seeds | " + " | ".join(f"test {c}" for c in cols)
             + " | unique SIDs before disambig. | largest group | tokenizer s | recommender s |",
             "|---" * (len(cols) + 7) + "|"]
    for key, label in (("metrics", "generative LM"), ("metrics_repeat", "generative LM + repeat prior")):
        for variant in VARIANTS:
            rs = [r for r in runs if r["variant"] == variant and r.get(key, {}).get("test")]
            if not rs:
                continue
            cells = []
            for c in cols:
                v = np.array([r[key]["test"][c] for r in rs])
                cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}")
            kind, views = VARIANTS[variant]
            views = views or ALL_VIEWS[dataset]
            lines.append(f"| {label} | {kind} ({'+'.join(views)}) | {len(rs)} | " + " | ".join(cells)
                         + f" | {np.mean([r['unique_before'] for r in rs]):.4f} | "
                         f"{max(r['largest_group'] for r in rs)} | {np.mean([r['tokenizer_seconds'] for r in rs]):.0f} | "
                         f"{np.mean([r['recommender_seconds'] for r in rs]):.0f} |")
    for f in floor_rows:
        if f["split"] == "test":
            lines.append(f"| {f['model']} | item ids | 1 | " + " | ".join(f"{f[c]:.4f}" for c in cols)
                         + f" | - | - | - | {f['seconds']:.0f} |")
    return "\n".join(lines)


def current_quality_file(lake_root: str, namespace: str, table: str) -> str | None:
    """The sid_quality JSON of the tokenizer that wrote ``table``'s latest version (a table tag
    reused by several tokenizers leaves one JSON beside each)."""
    files = glob.glob(os.path.join(lake_root, namespace, "_models", "tokenizer", "*",
                                   f"sid_quality-{namespace}-{table}.json"))
    return max(files, key=lambda f: json.loads(Path(f).read_text()).get("table_version", -1), default=None)


def code_quality(runs: list[dict], lake_root: str, namespace: str) -> str:
    """Issue #3 (c): SID code quality per tokenizer at equal L x K, from the sid_quality JSON
    that assign-ids writes beside each tokenizer (mean over seeds; per level: perplexity, Gini,
    codes used)."""
    rows = ["| tokenizer | views | seeds | unique SIDs before disambig. | largest group | "
            "perplexity per level | Gini per level | codes used per level |", "|---" * 8 + "|"]
    for variant in VARIANTS:
        figs = []
        for r in (r for r in runs if r["variant"] == variant):
            path = current_quality_file(lake_root, namespace, r["sid_table"])
            figs += [json.loads(Path(path).read_text())] if path else []
        if not figs:
            continue
        levels = len(figs[0]["levels"])

        def per_level(key: str, fmt: str) -> str:
            return " / ".join(format(np.mean([f["levels"][i][key] for f in figs]), fmt) for i in range(levels))

        kind, views = VARIANTS[variant]
        rows.append(f"| {kind} | {'+'.join(views or ['all'])} | {len(figs)} | "
                    f"{np.mean([f['unique_ratio_before_disambiguation'] for f in figs]):.4f} | "
                    f"{max(f['largest_collision_group'] for f in figs)} | {per_level('perplexity', '.1f')} | "
                    f"{per_level('gini', '.3f')} | {per_level('used_codes', '.0f')} |")
    return "\n".join(rows)


def rebuild_runs(dataset: str, lake_root: str, reevaluate: bool = False, extra: list[str] = ()) -> list[dict]:
    """The per-run records of an interrupted benchmark, from what its stages left in the lake:
    the latest eval_metrics run of each ``generative:<variant>_s<seed>``, the recommender and
    tokenizer model directories (metrics.json seconds) and the sid_quality JSON beside each
    tokenizer. ``reevaluate``: run the evaluate stage again on every recommender first (e.g. to
    add the +repeat rows to runs evaluated before that existed)."""
    from simcit.train.recommender_store import latest_recommender_dir

    config = str(CONFIGS[dataset])
    namespace = load_config(config).namespace
    lake = Lake(lake_root, namespace)
    runs = []
    history = lake.table("eval_metrics").history()
    order = {h.get("simcit.run_id"): h["version"] for h in history}
    evaluated_dir = {h.get("simcit.run_id"): h.get("simcit.model_dir") for h in history}
    rows = lake.dataset("eval_metrics").to_table(columns=["run_id", "model"]).to_pylist()
    latest: dict[str, str] = {}  # tag -> its last evaluate run
    for run_id in sorted({r["run_id"] for r in rows}, key=lambda r: order.get(r, -1)):
        model = next(r["model"] for r in rows if r["run_id"] == run_id)
        if model.startswith("generative:") and "_s" in model:
            latest[model.split(":", 1)[1].removesuffix(REPEAT)] = run_id
    for tag, run_id in sorted(latest.items()):
        variant, seed = tag.rsplit("_s", 1)
        if variant not in VARIANTS:
            continue
        table = f"semantic_ids__{tag}"
        # the recommender that run evaluated (several may exist for one SID table)
        rec_dir = os.path.abspath(evaluated_dir.get(run_id) or latest_recommender_dir(lake, table))
        if reevaluate:
            print(f"re-evaluating {tag} ({rec_dir})", flush=True)
            run_id = run_stage("evaluate", config, lake_root,
                               [f"assign_ids.table_tag={tag}", f"evaluate.model_dir={_q(rec_dir)}",
                                "evaluate.baselines=[]", *extra]).extra["run_id"]
        quality_file = current_quality_file(lake_root, namespace, table)
        quality = json.loads(Path(quality_file).read_text())
        tok_metrics = json.loads((Path(quality_file).parent / "metrics.json").read_text())
        rec_metrics = json.loads((Path(rec_dir) / "metrics.json").read_text())
        kind, views = VARIANTS[variant]
        runs.append({
            "variant": variant, "seed": int(seed), "kind": kind, "views": views or ALL_VIEWS[dataset],
            "sid_table": table, "tokenizer_seconds": tok_metrics["seconds"],
            "recommender_seconds": rec_metrics["seconds"],
            "unique_before": quality["unique_ratio_before_disambiguation"],
            "largest_group": quality["largest_collision_group"],
            "best_epoch": rec_metrics["best_epoch"] + 1, "eval_run_id": run_id,
            "ranks": next(iter(glob.glob(os.path.join(rec_dir, f"eval-{run_id}-ranks.parquet")))),
            "metrics": metrics_of(lake, run_id), "metrics_repeat": metrics_of(lake, run_id, repeat=True),
        })
    return runs


def report(result: dict, lake_root: str) -> None:
    namespace = load_config(CONFIGS[result["dataset"]]).namespace
    print(table(result["dataset"], result["runs"], result["floors"]))
    print()
    print(code_quality(result["runs"], lake_root, namespace))
    for c in result["paired_test_recall@10"]:
        print(f"paired test Recall@10 {c['a']} - {c['b']}: {c['diff']:+.4f} (s.e. {c['se']:.4f}, z {c['z']:+.1f}, "
              f"{c['users']} users)")
    print(f"\nwall {result['seconds'] / 60:.1f} min (ingest/features/sequences {result['feature_seconds'] / 60:.1f} min)")


def write_result(out: Path, result: dict) -> None:
    """The run's JSON at ``out``; an earlier run's file there is kept beside it, renamed with its
    modification time (``quality-nyc-20261130-1512.json``), never overwritten."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        stamp = time.strftime("%Y%m%d-%H%M", time.localtime(out.stat().st_mtime))
        out.rename(out.with_name(f"{out.stem}-{stamp}{out.suffix}"))
    out.write_text(json.dumps(result, indent=1, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--lake", default=str(REPO / "benchmarks" / "_work" / "quality_lake"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--floors", default="mostpop,markov,itemknn,sasrec")
    ap.add_argument("--sasrec-seconds", type=float, default=300.0)
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    help="extra config override for every stage (e.g. recommender.epochs=8)")
    ap.add_argument("--report", action="store_true", help="print the tables of the last run's JSON and exit")
    ap.add_argument("--rebuild", action="store_true",
                    help="rebuild the results of an interrupted run from the lake (+ floors), then report")
    ap.add_argument("--reevaluate", action="store_true",
                    help="with --rebuild: run the evaluate stage again on every recommender first")
    args = ap.parse_args()
    out = REPO / "benchmarks" / "_work" / f"quality-{args.dataset}.json"
    write = partial(write_result, out)
    if args.report:
        report(json.loads(out.read_text()), args.lake)
        return
    if args.rebuild:
        # an interrupted run: its finished tokenizer/recommender pairs from the lake, then floors
        runs = rebuild_runs(args.dataset, args.lake, args.reevaluate, args.overrides)
        t0 = time.time()
        floor_rows = floors(args.lake, str(CONFIGS[args.dataset]), [f for f in args.floors.split(",") if f],
                            args.sasrec_seconds, print)
        seconds = sum(r["tokenizer_seconds"] + r["recommender_seconds"] for r in runs) + time.time() - t0
        result = {"dataset": args.dataset, "seconds": seconds, "feature_seconds": 0.0, "rebuilt": True,
                  "overrides": args.overrides, "runs": runs, "floors": floor_rows,
                  "paired_test_recall@10": comparisons(runs, floor_rows, args.dataset)}
        write(result)
        report(result, args.lake)
        return
    config = str(CONFIGS[args.dataset])
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[quality {time.time() - t_start:7.0f}s] {msg}", flush=True)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from simcit.spark_session import get_spark
    from simcit.train.ray_runtime import connect_ray

    # Spark first, then Ray: a Spark JVM started while this process holds a Ray connection broke
    # that connection ("Missing :authority header") when the lake already had its features.
    get_spark(load_config(config).spark, "simcit-quality")
    connect_ray(None, 3, log)  # one local Ray for every stage of the run
    ensure_features(args.dataset, args.lake, config, log)
    t_features = time.time() - t_start
    lake = Lake(args.lake, load_config(config).namespace)
    runs = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for variant in args.variants.split(","):
            log(f"--- {variant}, seed {seed}")
            r = run_variant(args.dataset, variant, seed, args.lake, config, BUDGET[args.dataset] + args.overrides, log)
            r["metrics"] = metrics_of(lake, r["eval_run_id"])
            r["metrics_repeat"] = metrics_of(lake, r["eval_run_id"], repeat=True)
            runs.append(r)
            log(f"{variant} seed {seed}: test R@10 {r['metrics']['test']['recall@10']:.4f}, "
                f"unique before {r['unique_before']:.4f}")
    floor_rows = floors(args.lake, config, [f for f in args.floors.split(",") if f], args.sasrec_seconds, log)
    result = {"dataset": args.dataset, "seconds": time.time() - t_start, "feature_seconds": t_features,
              "overrides": args.overrides, "runs": runs, "floors": floor_rows,
              "paired_test_recall@10": comparisons(runs, floor_rows, args.dataset)}
    write(result)
    print()
    report(result, args.lake)
    print(out)


if __name__ == "__main__":
    main()
