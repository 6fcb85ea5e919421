"""Driver side of ``train-tokenizer``: Ray Train ``TorchTrainer`` over ``item_features``, then the
best checkpoint (hard-code validation loss) exported as a versioned model directory.

    outcome = train_tokenizer(cfg, lake)          # cfg: PipelineConfig, lake: simcit.lake.Lake
    outcome.saved.model_dir, outcome.saved.tokenizer_version, outcome.metrics["best_epoch"]

The same code runs with 1 or N workers, on a local Ray or a cluster, CPU (gloo) or GPU (NCCL),
with torch DDP or DeepSpeed. RQ-KMeans (no gradient training) is fitted in one Ray task instead.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from simcit.config import PipelineConfig
from simcit.lake import Lake, new_run_id
from simcit.tokenizer import build_tokenizer
from simcit.train.item_datasets import item_datasets
from simcit.train.model_config import config_to_dict, tokenizer_model_config
from simcit.train.model_store import SavedTokenizer, save_tokenizer, tokenizer_models_root
from simcit.train.ray_runtime import connect_ray, quiet_ray_data
from simcit.train.view_batches import infer_view_dims
from simcit.train.worker import MODEL_FILE, SAMPLE_DATASET, TrainState, WorkerSpec, train_loop_per_worker

# Fault injection for tests / drills: one worker raises once at the start of this epoch.
FAIL_AT_EPOCH_ENV = "SIMCIT_TRAIN_FAIL_AT_EPOCH"
RUNS_DIR = "_runs"  # Ray Train run storage (checkpoints) under the tokenizer models root
SCORE = "valid_loss"


@dataclass
class TrainingOutcome:
    saved: SavedTokenizer
    metrics: dict[str, Any]        # what metrics.json holds
    rows_in: int                   # rows of item_features
    table_version: int
    run_path: Optional[str] = None  # Ray Train run directory (checkpoints); None for RQ-KMeans
    result: Any = None             # ray.train.Result; None for RQ-KMeans


def _fail_at_epoch(configured: Optional[int]) -> Optional[int]:
    raw = os.environ.get(FAIL_AT_EPOCH_ENV)
    if raw in (None, ""):
        return configured
    value = int(raw)
    if value < 1:
        raise ValueError(f"{FAIL_AT_EPOCH_ENV} must be >= 1, got {value}")
    return value


def _deepspeed_config(cfg: PipelineConfig) -> dict[str, Any]:
    path = cfg.resolve(cfg.tokenizer.deepspeed_config)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"tokenizer.deepspeed_config: {path} does not exist") from None


def _use_gpu(configured: Optional[bool], num_workers: int) -> bool:
    if configured is not None:
        return configured
    import ray

    return ray.cluster_resources().get("GPU", 0) >= num_workers


def _steady_items_per_s(history: list[dict[str, Any]]) -> float:
    """Mean items/s over the epochs after the first (which pays for pipeline start-up)."""
    rows = history[1:] or history
    values = [r["items_per_s"] for r in rows if math.isfinite(r.get("items_per_s", float("nan")))]
    return sum(values) / len(values) if values else float("nan")


def train_tokenizer(cfg: PipelineConfig, lake: Lake, log: Callable[[str], None] = print,
                    run_id: Optional[str] = None) -> TrainingOutcome:
    tcfg = cfg.tokenizer
    run_id = run_id or new_run_id()
    t_start = time.time()
    table_version = lake.version("item_features")
    table = lake.dataset("item_features")
    rows_in = table.count_rows()
    view_dims, empty = infer_view_dims(table, tcfg.views)
    if empty:
        log(f"WARNING: view(s) {empty} have no embedding in item_features v{table_version}; training without them")
    if not view_dims:
        raise ValueError(f"none of the views {tcfg.views} has an embedding in item_features v{table_version}")
    model_config = tokenizer_model_config(tcfg, view_dims)
    ds_config = _deepspeed_config(cfg) if tcfg.strategy == "deepspeed" and tcfg.kind != "rqkmeans" else None
    log(f"item_features v{table_version}: {rows_in:,} items; views {view_dims}; {tcfg.kind} "
        f"L={tcfg.levels} K={tcfg.codebook_size}")

    started_ray = connect_ray(tcfg.ray_address, tcfg.num_workers * tcfg.cpus_per_worker + 1, log)
    try:
        quiet_ray_data()
        estimated_mb = rows_in * (4 * sum(view_dims.values()) + 64) / 2**20
        cache = estimated_mb <= tcfg.cache_mb
        log(f"items: ~{estimated_mb:,.0f} MB of embeddings: "
            f"{'cached in the Ray object store' if cache else 'streamed from the lake every epoch'}")
        datasets = item_datasets(lake, list(view_dims), tcfg.valid_fraction, tcfg.sample_size, rows_in,
                                 tcfg.seed, cache=cache)
        if tcfg.kind == "rqkmeans":
            state, latest, run_path, result = _fit_rqkmeans(tcfg, model_config, datasets, log)
            best_row = latest.history[0]
        else:
            state, latest, best_row, run_path, result = _fit_ray_train(
                cfg, lake, model_config, ds_config, datasets, rows_in, run_id, log, cached=cache)
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    model = build_tokenizer(tcfg.kind, model_config)
    model.load_state_dict(state)
    history = latest.history
    metrics = {
        "kind": tcfg.kind,
        "strategy": None if tcfg.kind == "rqkmeans" else tcfg.strategy,
        "num_workers": 1 if tcfg.kind == "rqkmeans" else tcfg.num_workers,
        "best_epoch": best_row["epoch"],
        "best_valid_loss": best_row["valid_loss"],
        "epochs": history,
        "resumed_at": latest.resumed_at,
        "items_per_s": _steady_items_per_s(history),
        "train_items": history[-1].get("train_items"),
        "valid_items": history[-1].get("valid_items"),
        "seconds": time.time() - t_start,
        "run_id": run_id,
        "ray_run_path": run_path,
    }
    training = {k: v for k, v in dataclasses.asdict(tcfg).items() if k not in ("fail_at_epoch", "ray_address")}
    saved = save_tokenizer(model, tokenizer_models_root(lake), metrics=metrics, extra={
        "source": {"namespace": lake.namespace, "table": "item_features", "version": table_version},
        "training": training,
        "run_id": run_id,
    })
    log(f"best epoch {best_row['epoch']} (hard-code valid loss {best_row['valid_loss']:.4f}); "
        f"model {saved.model_dir}")
    return TrainingOutcome(saved, metrics, rows_in, table_version, run_path, result)


def _fit_rqkmeans(tcfg, model_config, datasets, log):
    import ray

    from simcit.train.rqkmeans_fit import fit_rqkmeans

    log(f"fitting RQ-KMeans on a sample of <= {tcfg.sample_size:,} training items")
    task = fit_rqkmeans.options(num_cpus=tcfg.cpus_per_worker)
    state, row = ray.get(task.remote(config_to_dict(model_config), datasets["sample"], datasets["valid"],
                                     tcfg.batch_size, max(1, int(tcfg.cpus_per_worker))))
    log(f"RQ-KMeans: {row['train_items']:,} items fitted in {row['epoch_seconds']:.1f}s; "
        f"valid quantization error {row['valid_loss']:.4f}")
    return state, TrainState(next_epoch=1, history=[row]), None, None


def _fit_ray_train(cfg, lake, model_config, ds_config, datasets, rows_in, run_id, log, cached: bool = False):
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    tcfg = cfg.tokenizer
    use_gpu = _use_gpu(tcfg.use_gpu, tcfg.num_workers)
    expected_train = rows_in * (1.0 - tcfg.valid_fraction)
    spec = WorkerSpec(
        kind=tcfg.kind,
        model_config=config_to_dict(model_config),
        strategy=tcfg.strategy,
        batch_size=tcfg.batch_size,
        epochs=tcfg.epochs,
        lr=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        warmup_fraction=tcfg.warmup_fraction,
        steps_per_epoch=math.ceil(expected_train / tcfg.num_workers / tcfg.batch_size),
        threads=max(1, int(tcfg.cpus_per_worker)),
        seed=tcfg.seed,
        deepspeed_config=ds_config,
        shuffle_buffer=8 * tcfg.batch_size,
        replay_shards=cached,
        fail_at_epoch=_fail_at_epoch(tcfg.fail_at_epoch),
    )
    resources = {"CPU": tcfg.cpus_per_worker}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=dataclasses.asdict(spec),
        scaling_config=ScalingConfig(num_workers=tcfg.num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=f"{tcfg.kind}-{run_id}",
            storage_path=os.path.join(tokenizer_models_root(lake), RUNS_DIR),
            failure_config=FailureConfig(max_failures=tcfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=tcfg.checkpoints_to_keep,
                                               checkpoint_score_attribute=SCORE, checkpoint_score_order="min"),
            logging_config=LoggingConfig(log_level="WARNING"),  # per-report INFO lines: we log per epoch
        ),
        datasets={"train": datasets["train"], "valid": datasets["valid"], SAMPLE_DATASET: datasets["sample"]},
        dataset_config=DataConfig(datasets_to_split=["train", "valid"]),
    )
    log(f"Ray Train: {tcfg.num_workers} worker(s), {'GPU/NCCL' if use_gpu else 'CPU/gloo'}, "
        f"strategy {tcfg.strategy}, {tcfg.epochs} epoch(s), batch {tcfg.batch_size}/worker")
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"tokenizer training failed: {result.error}") from result.error
    best_checkpoint, best_row = best_checkpoint_of(result)
    with best_checkpoint.as_directory() as d:
        state = torch.load(os.path.join(d, MODEL_FILE), map_location="cpu", weights_only=True)
    with result.checkpoint.as_directory() as d:
        latest = TrainState.load(d)
    return state, latest, best_row, str(result.path), result


def best_checkpoint_of(result) -> tuple[Any, dict[str, Any]]:
    """The retained checkpoint with the lowest hard-code validation loss (ties: earliest epoch)."""
    candidates = [(ckpt, m) for ckpt, m in (result.best_checkpoints or []) if m and SCORE in m]
    if not candidates:
        raise RuntimeError("the training run reported no checkpoint with a validation loss")
    return min(candidates, key=lambda cm: (cm[1][SCORE], cm[1]["epoch"]))
