"""evaluate: the recommender (constrained beam search) and the floors on valid and test ->
``eval_metrics`` (one row per run, dataset, split, tokenizer, model, metric, k) + a printed table.

Protocol (SPEC §4): leave-one-out, full ranking over every item with a SID, Recall@{1,5,10,20}
and NDCG@{5,10,20}; nothing is excluded from the ranking (repeat visits are legitimate
targets). ``test_cold`` repeats test on the users whose target was seen fewer than
``evaluate.cold_threshold`` times in training (counts: all interactions of an item minus its
valid and test targets, i.e. exactly the training part).

Users are streamed from ``sequences`` in Arrow batches; the model and every floor rank the same
batch, so only per-user ranks are kept (paired comparisons on the same users).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from simcit.evaluation.metrics import metrics_from_ranks, paired_comparison, ranks_from_scores, ranks_from_topk
from simcit.evaluation.sequences import Examples
from simcit.recommender import repeat_prior
from simcit.recommender.generative import GenerativeRecommender
from simcit.stages.runtime import StageContext, StageSummary
from simcit.train.recommender_data import SplitRows, iter_sequence_batches, read_split, tokenizer_meta
from simcit.train.recommender_store import latest_recommender_dir, load_recommender_dir

SPLITS = ("valid", "test")
NDCG_KS_SKIP = (1,)  # NDCG@1 == Recall@1 under leave-one-out: not reported twice


def training_item_counts(lake) -> Counter:
    """Training-part occurrences per item: all interactions minus valid and test targets."""
    counts: Counter = Counter()
    for batch in lake.dataset("interactions").to_batches(columns=["item_id"]):
        vc = pc.value_counts(batch.column(0))
        counts.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
    for split in SPLITS:
        for batch in iter_sequence_batches(lake, split):
            counts.subtract(batch.column("target").to_pylist())
    return counts


def training_sequences(lake) -> list[list[str]]:
    """Each user's training part (history + target of the train row) for the floors' fit."""
    out: list[list[str]] = []
    for batch in iter_sequence_batches(lake, "train"):
        d = batch.to_pydict()
        out += [list(h) + [t] for h, t in zip(d["history"], d["target"])]
    return out


def fit_floors(names: list[str], train: list[list[str]], items: list[str], tune: SplitRows,
               log: Callable[[str], None]) -> dict[str, Any]:
    """Each floor fitted on the training parts, hyper-parameters tuned on ``tune`` (valid rows)."""
    from simcit.evaluation.baselines import MostPop
    from simcit.evaluation.run_baselines import GRIDS
    from simcit.evaluation.tuning import grid_search

    valid = Examples(tune.user_ids, tune.histories, tune.targets)
    floors: dict[str, Any] = {}
    for name in names:
        t0 = time.time()
        if name == "mostpop":
            floors[name] = MostPop().fit(train, items)
            params: dict[str, Any] = {}
        elif name == "sasrec":
            from simcit.evaluation.baselines.sasrec import SASRec, SASRecConfig

            floors[name] = SASRec(SASRecConfig(max_train_seconds=600.0)).fit(train, items)
            params = {"best_epoch": floors[name].best_epoch}
        else:
            build, grid = GRIDS[name]
            tuned = grid_search(build, grid, train, items, valid)
            floors[name], params = tuned.best_model, tuned.best_params
        log(f"floor {name}: fitted{' and tuned on ' + str(len(valid)) + ' valid users' if params else ''} "
            f"in {time.time() - t0:.1f}s {params or ''}")
    return floors


def _split_limit(ecfg, split: str) -> int | None:
    """How many users of ``split`` to rank: ``limit_users`` everywhere, ``valid_users`` on valid."""
    limits = [n for n in (ecfg.limit_users, ecfg.valid_users if split == "valid" else None) if n is not None]
    return min(limits) if limits else None


def _metric_rows(run_id: str, dataset: str, split: str, tokenizer: str, model: str,
                 per_user: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = [dict(run_id=run_id, dataset=dataset, split=split, tokenizer=tokenizer, model=model,
                 metric="users", k=0, value=float(len(next(iter(per_user.values())))))]
    for name, values in per_user.items():
        metric, k = name.split("@")
        if metric == "ndcg" and int(k) in NDCG_KS_SKIP:
            continue
        rows.append(dict(run_id=run_id, dataset=dataset, split=split, tokenizer=tokenizer, model=model,
                         metric=metric, k=int(k), value=float(np.mean(values)) if len(values) else float("nan")))
    return rows


def _print_table(rows: list[dict[str, Any]], ks: list[int]) -> None:
    cols = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks if k not in NDCG_KS_SKIP]
    table: dict[tuple[str, str], dict[str, float]] = {}
    for r in rows:
        key = (r["model"], r["split"])
        table.setdefault(key, {})[f"{r['metric']}@{r['k']}" if r["metric"] != "users" else "users"] = r["value"]
    width = max(len(m) for m, _ in table) + 2
    header = f"{'model':<{width}}{'split':<11}{'users':>7}" + "".join(f"{c:>11}" for c in cols)
    print(header)
    print("-" * len(header))
    for (model, split), vals in table.items():
        print(f"{model:<{width}}{split:<11}{int(vals.get('users', 0)):>7}"
              + "".join(f"{vals.get(c, float('nan')):>11.4f}" for c in cols))


def run(ctx: StageContext) -> StageSummary:
    cfg, ecfg, lake = ctx.cfg, ctx.cfg.evaluate, ctx.lake
    table = cfg.sid_table()
    model_dir = cfg.resolve(ecfg.model_dir) if ecfg.model_dir else latest_recommender_dir(lake, table)
    loaded = load_recommender_dir(model_dir, lake=lake, sid_table=table)
    info, vocab = loaded.info, loaded.vocab
    threads = torch.get_num_threads()
    meta = tokenizer_meta(lake, vocab.tokenizer_version) or {}
    tokenizer_name = f"{meta.get('kind', info.get('tokenizer_kind') or 'tokenizer')}-{vocab.tokenizer_version}"
    # "generative:simcit" over the default table; "generative:<tag>" over semantic_ids__<tag>
    model_name = f"generative:{table.split('__', 1)[1] if '__' in table else info.get('tokenizer_kind') or 'sid'}"
    ctx.log(f"recommender {model_dir} ({table} v{vocab.table_version}, {vocab.num_items:,} items, "
            f"context {loaded.context}); beam {ecfg.beam_size}, {threads} torch thread(s)")
    rec = GenerativeRecommender(loaded.model, vocab, loaded.sequence_config, token_map=loaded.token_map,
                                beam_size=ecfg.beam_size, batch_users=ecfg.batch_users, context=loaded.context)
    k_max = max(ecfg.ks)
    if ecfg.beam_size < k_max:
        ctx.log(f"note: beam {ecfg.beam_size} < K={k_max}: the top-{k_max} comes from the last level's "
                f"beam x K expansions, so deeper ranks are approximate")

    floors: dict[str, Any] = {}
    if ecfg.baselines:
        train = training_sequences(lake)
        floors = fit_floors(list(ecfg.baselines), train, vocab.item_ids, read_split(lake, "valid", ecfg.tune_users),
                            ctx.log)
        del train
    prior, prior_name = None, f"{model_name}+repeat"
    tune_cands, tune_users, tune_unknown = None, [], 0
    use_ts = loaded.context == "time"
    if ecfg.repeat_prior:
        t0 = time.time()
        tune = read_split(lake, "valid", ecfg.tune_users)
        cands = rec.candidates(tune.histories, k_max, ecfg.history_candidates,
                               tune.history_ts if use_ts else None, tune.target_ts if use_ts else None)
        tuned = repeat_prior.tune(cands, rec.item_indices(tune.targets))
        prior = tuned.prior
        ctx.log(f"repeat prior: {prior.describe()} (valid Recall@10 on {len(tune)} users: {tuned.metric:.4f}, "
                f"plain model {tuned.plain:.4f}; tuned in {time.time() - t0:.1f}s)")
        # The valid pass below starts with the same users in the same order: it reuses these
        # candidates instead of decoding them again (checked user by user).
        tune_cands, tune_users = cands, tune.user_ids
        del cands, tune
        # Counted: these users' unknown history items, once (the valid pass reuses their candidates).
        tune_unknown, rec.unknown_items = rec.unknown_items, 0
    counts = training_item_counts(lake)

    run_id = ctx.run_id
    rows: list[dict[str, Any]] = []
    per_model_test: dict[str, dict[str, np.ndarray]] = {}
    users_total = 0
    rank_tables: list[pa.Table] = []
    for split in SPLITS:
        ranks: dict[str, list[np.ndarray]] = {
            name: [] for name in [model_name, *([prior_name] if prior else []), *floors]}
        cold: list[np.ndarray] = []
        users: list[str] = []
        done, t0 = 0, time.time()
        for batch in iter_sequence_batches(lake, split, batch_rows=max(ecfg.batch_users * 8, 512),
                                           limit=_split_limit(ecfg, split)):
            part = SplitRows.from_batch(batch)
            ts = (part.history_ts, part.target_ts) if use_ts else (None, None)
            targets = rec.item_indices(part.targets)
            if prior is not None:
                if split == "valid" and tune_users[done:done + len(part)] == part.user_ids:
                    cands = tune_cands.take(done, done + len(part))
                    rec.unknown_items += tune_unknown if done == 0 else 0
                else:
                    cands = rec.candidates(part.histories, k_max, ecfg.history_candidates, *ts)
                top = cands.beam_items
                ranks[prior_name].append(ranks_from_topk(repeat_prior.rank(cands, prior, k_max), targets))
            else:
                top = rec.recommend_indices(part.histories, k_max, *ts)
            ranks[model_name].append(ranks_from_topk(top, targets))
            for name, floor in floors.items():
                ranks[name].append(ranks_from_scores(floor.score(part.histories), targets))
            cold.append(np.array([counts.get(t, 0) < ecfg.cold_threshold for t in part.targets]))
            users += part.user_ids
            done += len(part)
            ctx.log(f"{split}: {done:,} users ranked ({done / max(time.time() - t0, 1e-9):.1f} users/s)")
        users_total += done
        cold_mask = np.concatenate(cold) if cold else np.zeros(0, dtype=bool)
        if split == "test":
            ctx.log(f"test: {int(cold_mask.sum()):,} of {done:,} targets are cold (seen < {ecfg.cold_threshold} "
                    f"times in training){'' if cold_mask.any() else ': no test_cold rows'}")
        for name, parts in ranks.items():
            r = np.concatenate(parts) if parts else np.zeros(0)
            rank_tables.append(pa.table({"user_id": users, "split": [split] * len(users), "model": [name] * len(users),
                                         "rank": r, "cold": cold_mask}))
            per_user = metrics_from_ranks(r, ecfg.ks)
            tok = tokenizer_name if name in (model_name, prior_name) else "none"
            rows += _metric_rows(run_id, cfg.dataset.name, split, tok, name, per_user)
            if split == "test":
                per_model_test[name] = per_user
                if cold_mask.any():
                    rows += _metric_rows(run_id, cfg.dataset.name, "test_cold", tok, name,
                                         {k: v[cold_mask] for k, v in per_user.items()})
        if split == "valid":
            tune_cands, tune_users = None, []
        if rec.unknown_items:
            ctx.log(f"WARNING: {rec.unknown_items:,} history items have no SID in {table} and were skipped")

    # Per-user ranks beside the model (1-based, inf = not in the top-K): paired comparisons
    # between runs on the same users, e.g. benchmarks/quality.py.
    ranks_file = os.path.join(model_dir, f"eval-{run_id}-ranks.parquet")
    pq.write_table(pa.concat_tables(rank_tables), ranks_file)
    result = lake.write_table("eval_metrics", pa.Table.from_pylist(rows), mode="append",
                              metadata={"simcit.run_id": run_id, "simcit.model_dir": model_dir})
    print(f"\nevaluation {run_id} on {cfg.dataset.name} ({table} v{vocab.table_version}; "
          f"test_cold = targets seen < {ecfg.cold_threshold} times in training)")
    _print_table(rows, list(ecfg.ks))
    if floors and per_model_test:
        best = max(floors, key=lambda n: float(np.mean(per_model_test[n]["recall@10"])))
        for name in [model_name, *([prior_name] if prior else [])]:
            cmp = paired_comparison(per_model_test[name]["recall@10"], per_model_test[best]["recall@10"])
            print(f"test Recall@10, {name} - {best} (best floor): {cmp.diff:+.4f} "
                  f"(paired s.e. {cmp.se_diff:.4f}, z = {cmp.z:+.1f}, {cmp.n} users)")
    if prior is not None:
        print(f"{prior_name}: the model mixed with a copy prior over the user's history ({prior.describe()}, "
              f"tuned on valid)")
    return ctx.summary(
        rows_in=users_total,
        rows_out=result.rows,
        versions={table: vocab.table_version, "eval_metrics": result.version},
        extra={"run_id": run_id, "model_dir": model_dir, "ranks": ranks_file,
               **({"repeat_prior": prior.describe()} if prior else {})},
    )
