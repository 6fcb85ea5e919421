"""Floor baselines on a raw dataset under the SimCIT protocol (a protocol check, not the pipeline).

    python -m simcit.evaluation.run_baselines --dataset nyc --models mostpop,markov,repeat,itemknn
    python -m simcit.evaluation.run_baselines --dataset scientific --models sasrec --sasrec-seconds 300

Hyper-parameters are tuned on valid; test is evaluated once with the chosen setting.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import pandas as pd

from simcit.evaluation.baselines import ItemKNN, ItemKNNConfig, MarkovRepeat, MarkovRepeatConfig, MostPop
from simcit.evaluation.metrics import DEFAULT_KS
from simcit.evaluation.ranking import Recommender, evaluate
from simcit.evaluation.raw_sequences import LOADERS
from simcit.evaluation.sequences import training_sequences
from simcit.evaluation.tuning import grid_search

GAMMAS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 1.0]
GRIDS: dict[str, tuple[Callable[..., Recommender], dict[str, list[Any]]]] = {
    "markov": (
        lambda **p: MarkovRepeat(MarkovRepeatConfig(**p)),
        # Negative repeat weights let the tuner learn "never repeat" (Amazon); -100 ~ exclusion.
        {"repeat_weight": [0.0, -100.0, -1.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0], "gamma": GAMMAS},
    ),
    "repeat": (
        lambda **p: MarkovRepeat(MarkovRepeatConfig(transition_weight=0.0, **p)),
        {"gamma": GAMMAS},
    ),
    "itemknn": (
        lambda **p: ItemKNN(ItemKNNConfig(**p)),
        {
            "window": [1, 2, 3, 5, 10],
            "last_n": [1, 3, 5, 10, 20],
            "decay": [0.7, 1.0],
            "history_weight": [0.0, -100.0, 1.0, 4.0],
        },
    ),
}


def run(dataset: str, models: list[str], sasrec_seconds: float, threads: int) -> pd.DataFrame:
    data = LOADERS[dataset]()
    train = training_sequences(data.sequences)
    rows = []
    for name in models:
        t0 = time.monotonic()
        params: dict[str, Any] = {}
        if name == "mostpop":
            model: Recommender = MostPop().fit(train, data.items)
        elif name == "sasrec":
            from simcit.evaluation.baselines.sasrec import SASRec, SASRecConfig

            cfg = SASRecConfig(max_train_seconds=sasrec_seconds, num_threads=threads, verbose=True)
            model = SASRec(cfg).fit(train, data.items, valid=data.sequences)
            params = {"best_epoch": model.best_epoch, "epochs_run": len(model.log)}
        else:
            build, grid = GRIDS[name]
            tuned = grid_search(build, grid, train, data.items, data.sequences)
            model, params = tuned.best_model, tuned.best_params
        fit_s = time.monotonic() - t0
        for split in ("valid", "test"):
            res = evaluate(model, data.sequences, split)
            rows.append(res.as_row(dataset=dataset, model=name, params=json.dumps(params), seconds=round(fit_s, 1)))
        print(pd.DataFrame(rows[-2:]).to_string(index=False), flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=sorted(LOADERS), required=True)
    ap.add_argument("--models", default="mostpop,markov,repeat,itemknn")
    ap.add_argument("--sasrec-seconds", type=float, default=300.0)
    ap.add_argument("--threads", type=int, default=1)  # 2 threads on 2 busy cores thrash
    ap.add_argument("--out", help="write the table as CSV here")
    args = ap.parse_args()
    table = run(args.dataset, args.models.split(","), args.sasrec_seconds, args.threads)
    cols = ["dataset", "model", "split"] + [f"{m}@{k}" for m in ("recall", "ndcg") for k in DEFAULT_KS]
    print(table[cols].to_markdown(index=False, floatfmt=".4f") if _has_tabulate() else table[cols].to_string(index=False))
    if args.out:
        table.to_csv(args.out, index=False)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
