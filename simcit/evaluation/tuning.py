"""Grid search of a baseline's hyper-parameters on the validation split.

The test split is never looked at here: the chosen model is returned untouched (still fitted on
training parts only) and evaluated on test by the caller.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from simcit.evaluation.metrics import DEFAULT_KS
from simcit.evaluation.ranking import Recommender, evaluate
from simcit.evaluation.sequences import Examples


@dataclass
class TuningResult:
    best_params: dict[str, Any]
    best_model: Recommender
    table: pd.DataFrame  # one row per grid point with its validation metrics


def grid_search(
    build: Callable[..., Recommender],
    grid: Mapping[str, Sequence[Any]],
    train_sequences: Sequence[Sequence[str]],
    items: Sequence[str],
    valid: pd.DataFrame | Examples,
    metric: str = "recall@10",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> TuningResult:
    """``build(**params)`` makes an unfitted model; each grid point is fitted and scored on valid.
    Ties on ``metric`` go to the earlier grid point, so list the simpler settings first.

    A model that declares ``fit_fields`` (config fields fit() depends on) and ``with_config`` is
    fitted once per distinct value of those fields; other grid points reuse that fit.
    """
    names = list(grid)
    rows, best, best_value = [], None, float("-inf")
    fitted: dict[tuple, Recommender] = {}
    for values in itertools.product(*(grid[n] for n in names)):
        params = dict(zip(names, values))
        model = build(**params)
        fit_fields = getattr(model, "fit_fields", None)
        if fit_fields is None or not hasattr(model, "with_config"):
            model = model.fit(train_sequences, items)
        else:
            key = tuple(getattr(model.config, f) for f in fit_fields)
            if key not in fitted:
                fitted[key] = model.fit(train_sequences, items)
            model = fitted[key].with_config(model.config)
        res = evaluate(model, valid, "valid", ks=ks, batch_size=batch_size)
        rows.append({**params, **res.metrics})
        if res.metrics[metric] > best_value:
            best, best_value = (params, model), res.metrics[metric]
    assert best is not None, "empty grid"
    return TuningResult(best[0], best[1], pd.DataFrame(rows))
