"""RQ-KMeans (no gradient training) through the same stage: residual k-means fitted on a bounded,
streamed sample of the training items inside one Ray task; validation = mean squared
quantization error of the validation items (streamed)."""
from __future__ import annotations

import time
from typing import Any

import ray
import torch

from simcit.tokenizer import build_tokenizer
from simcit.train.model_config import config_from_dict
from simcit.train.view_batches import sample_view_batch, to_view_batch


def _batches(ds, view_dims, batch_size: int):
    for rows in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
        if rows.num_rows:
            yield to_view_batch(rows, view_dims)


@ray.remote
def fit_rqkmeans(model_config: dict[str, Any], sample_ds, valid_ds, batch_size: int,
                 threads: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    torch.set_num_threads(max(1, threads))
    model = build_tokenizer("rqkmeans", config_from_dict("rqkmeans", model_config))
    view_dims = dict(model.config.views)
    sample, n = sample_view_batch(sample_ds.iter_batches(batch_size=8192, batch_format="pyarrow"), view_dims)
    if n < model.config.codebook_size:
        raise ValueError(f"RQ-KMeans needs at least codebook_size={model.config.codebook_size} "
                         f"training items, the sample has {n}")
    t0 = time.perf_counter()
    model.fit(sample)  # rows in item-id order: the same fit for the same seed, whatever Ray's order
    fit_seconds = time.perf_counter() - t0
    del sample
    total, items = 0.0, 0
    usage = torch.zeros(model.config.levels, model.config.codebook_size, dtype=torch.bool)
    for batch in _batches(valid_ds, view_dims, batch_size):
        total += model.validation_loss(batch).metrics["loss"] * batch.batch_size
        items += batch.batch_size
        codes = model.codes(batch)
        for level in range(model.config.levels):
            usage[level, codes[:, level]] = True
    if not items:
        raise RuntimeError("no validation items: raise tokenizer.valid_fraction or check item_features")
    row = {"epoch": 0, "attempt": 0, "valid_loss": total / items, "valid_quantization_error": total / items,
           "valid_items": items, "valid_code_usage": float(usage.double().mean()), "train_items": n,
           "items_per_s": n / fit_seconds if fit_seconds > 0 else float("nan"), "epoch_seconds": fit_seconds}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return state, row
