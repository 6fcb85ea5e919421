"""Driver side of ``train-recommender``: Ray Train ``TorchTrainer`` (DeepSpeed ZeRO-2 by default)
over the training rows of ``sequences``, SIDs from a ``semantic_ids`` table version; the best
checkpoint (validation Recall@10) is exported as a ``save_pretrained`` model directory tied to
that table version (``simcit.train.recommender_store``).

    outcome = train_recommender(cfg, lake)     # cfg: PipelineConfig, lake: simcit.lake.Lake
    outcome.model_dir, outcome.metrics["best_valid_recall@10"]

Same code at 1 or N workers, local Ray or a cluster, CPU (gloo) or GPU (NCCL; bf16 where the GPU
has it, from the DeepSpeed JSON's ``"bf16": {"enabled": "auto"}``).
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
from simcit.recommender import RecommenderConfig, SIDVocabulary, num_parameters
from simcit.train.ray_runtime import connect_ray, quiet_ray_data
from simcit.train.recommender_data import read_split, sid_vocabulary, tokenizer_meta
from simcit.train.recommender_store import recommender_models_root, save_recommender_dir
from simcit.train.recommender_worker import SCORE, RecommenderSpec, build_recommender, train_loop_per_worker
from simcit.train.trainer import FAIL_AT_EPOCH_ENV, RUNS_DIR, _use_gpu
from simcit.train.worker import MODEL_FILE, TrainState


BYTES_PER_INTERACTION = 64  # item id string + timestamp + list overhead, a generous estimate


@dataclass
class RecommenderOutcome:
    model_dir: str
    metrics: dict[str, Any]
    sid_table: str
    sid_table_version: int
    train_users: int


def _deepspeed_config(cfg: PipelineConfig) -> dict[str, Any]:
    path = cfg.resolve(cfg.recommender.deepspeed_config)
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise FileNotFoundError(f"recommender.deepspeed_config: {path} does not exist") from None


def _fail_at_epoch(configured: Optional[int]) -> Optional[int]:
    raw = os.environ.get(FAIL_AT_EPOCH_ENV)
    return int(raw) if raw not in (None, "") else configured


def _count_train_rows(lake: Lake) -> tuple[int, int]:
    """(users, interactions) of the training part, from Arrow metadata-light scans."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    users = items = 0
    for batch in lake.dataset("sequences").to_batches(columns=["history"], filter=ds.field("split") == "train"):
        users += batch.num_rows
        items += int(pc.sum(pc.list_value_length(batch.column(0))).as_py() or 0) + batch.num_rows
    return users, items


def model_config_for(cfg: PipelineConfig, vocab: SIDVocabulary) -> RecommenderConfig:
    """RecommenderConfig from ``recommender.model``; positions default to what a window needs."""
    rcfg = cfg.recommender
    tokens_per_item = vocab.sid_length + (1 if rcfg.context == "time" else 0)
    needed = 2 + rcfg.window * tokens_per_item + 1
    data = {"max_position_embeddings": max(256, needed), **rcfg.model}
    model_cfg = RecommenderConfig.from_dict(data)
    if model_cfg.max_position_embeddings < needed:
        raise ValueError(f"recommender.model.max_position_embeddings={model_cfg.max_position_embeddings} < "
                         f"{needed} tokens a window of {rcfg.window} items needs")
    return model_cfg


def train_recommender(cfg: PipelineConfig, lake: Lake, log: Callable[[str], None] = print,
                      run_id: Optional[str] = None) -> RecommenderOutcome:
    rcfg = cfg.recommender
    run_id = run_id or new_run_id()
    t_start = time.time()
    table = cfg.sid_table()
    vocab = sid_vocabulary(lake, table, rcfg.context)
    if not lake.exists("sequences"):
        raise FileNotFoundError("table sequences does not exist: run `simcit sequences` first")
    seq_version = lake.version("sequences")
    users, interactions = _count_train_rows(lake)
    if users == 0:
        raise ValueError(f"sequences v{seq_version} has no training rows")
    valid = read_split(lake, "valid", limit=rcfg.valid_users)
    if len(valid) == 0:
        raise ValueError(f"sequences v{seq_version} has no validation rows (users need >= 3 interactions)")
    model_cfg = model_config_for(cfg, vocab)
    meta = tokenizer_meta(lake, vocab.tokenizer_version) or {}
    ds_config = _deepspeed_config(cfg) if rcfg.strategy == "deepspeed" else None
    log(f"{table} v{vocab.table_version}: {vocab.num_items:,} items, SID length {vocab.sid_length} "
        f"(tokenizer {meta.get('kind', '?')} {vocab.tokenizer_version}); sequences v{seq_version}: "
        f"{users:,} users, {interactions:,} training interactions; {len(valid):,} early-stopping users")
    base = f"base model {rcfg.base_model}" if rcfg.base_model else (
        f"{model_cfg.arch} from scratch (hidden {model_cfg.hidden_size}, {model_cfg.num_layers} layers)")
    log(f"model: {base}; window {rcfg.window} items ({rcfg.windows}), context {rcfg.context}")

    started_ray = connect_ray(rcfg.ray_address, rcfg.num_workers * rcfg.cpus_per_worker + 1, log)
    try:
        import ray
        import ray.data
        from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        quiet_ray_data()
        train_ds = ray.data.read_parquet(lake.file_uris("sequences"), columns=["split", "history", "target",
                                                                                 "history_ts", "target_ts"])
        train_ds = train_ds.filter(expr="split == 'train'")
        # Small tables are read once into the object store: re-streaming the Parquet files every
        # epoch costs a fixed start-up and, on a small machine, CPU taken from the training step.
        estimated_mb = interactions * BYTES_PER_INTERACTION / 2**20
        if estimated_mb <= rcfg.cache_mb:
            train_ds = train_ds.materialize()
        log(f"training rows: ~{estimated_mb:,.0f} MB, "
            f"{'cached in the Ray object store' if estimated_mb <= rcfg.cache_mb else 'streamed from the lake every epoch'}")
        # windows per user ~ interactions / stride (sliding) or 1 (last): the lr schedule's horizon
        per_user = (interactions / users / rcfg.stride + 1) if rcfg.windows == "sliding" else 1.0
        steps = math.ceil(users * per_user / rcfg.num_workers / rcfg.batch_size)
        use_gpu = _use_gpu(rcfg.use_gpu, rcfg.num_workers)
        spec = RecommenderSpec(
            vocab_ref=ray.put(vocab.to_dict()),
            valid_ref=ray.put(valid),
            model_config=model_cfg.to_dict(),
            base_model=cfg.resolve(rcfg.base_model) if rcfg.base_model else None,
            window=rcfg.window, windows=rcfg.windows, stride=rcfg.stride, context=rcfg.context,
            strategy=rcfg.strategy, batch_size=rcfg.batch_size, epochs=rcfg.epochs, lr=rcfg.lr,
            weight_decay=rcfg.weight_decay, warmup_fraction=rcfg.warmup_fraction,
            gradient_clipping=rcfg.gradient_clipping, steps_per_epoch=steps,
            threads=max(1, int(rcfg.cpus_per_worker)), seed=rcfg.seed, beam_size=rcfg.beam_size,
            patience=rcfg.patience, deepspeed_config=ds_config, fail_at_epoch=_fail_at_epoch(rcfg.fail_at_epoch),
            group_by_length=rcfg.group_by_length,
        )
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)},
            scaling_config=ScalingConfig(num_workers=rcfg.num_workers, use_gpu=use_gpu,
                                         resources_per_worker={"CPU": rcfg.cpus_per_worker}),
            run_config=RunConfig(
                name=f"{table}-{run_id}",
                storage_path=os.path.join(recommender_models_root(lake), RUNS_DIR),
                failure_config=FailureConfig(max_failures=rcfg.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=rcfg.checkpoints_to_keep,
                                                   checkpoint_score_attribute=SCORE, checkpoint_score_order="max"),
                logging_config=LoggingConfig(log_level="WARNING"),
            ),
            datasets={"train": train_ds},
            dataset_config=DataConfig(datasets_to_split=["train"]),
        )
        log(f"Ray Train: {rcfg.num_workers} worker(s), {'GPU/NCCL' if use_gpu else 'CPU/gloo'}, strategy "
            f"{rcfg.strategy}, <= {rcfg.epochs} epoch(s) (patience {rcfg.patience}), batch {rcfg.batch_size}/worker")
        result = trainer.fit()
        if result.error is not None:
            raise RuntimeError(f"recommender training failed: {result.error}") from result.error
        best_checkpoint, best_row = _best_checkpoint(result)
        with best_checkpoint.as_directory() as d:
            state = torch.load(os.path.join(d, MODEL_FILE), map_location="cpu", weights_only=True)
        with result.checkpoint.as_directory() as d:
            latest = TrainState.load(d)
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    model, token_map, tokenizer = build_recommender(spec, vocab)
    model.load_state_dict(state)
    history = latest.history
    metrics = {
        "best_epoch": best_row["epoch"],
        "best_valid_recall@10": best_row[SCORE],
        "best_valid_ndcg@10": best_row["valid_ndcg@10"],
        "epochs_run": len(history),
        "stopped_early": len(history) < rcfg.epochs,
        "epochs": history,
        "resumed_at": latest.resumed_at,
        "parameters": num_parameters(model),
        "seconds": time.time() - t_start,
        "run_id": run_id,
        "ray_run_path": str(result.path),
    }
    training = {k: v for k, v in dataclasses.asdict(rcfg).items() if k not in ("fail_at_epoch", "ray_address")}
    info = {
        "sid_table": table,
        "sid_table_version": vocab.table_version,
        "tokenizer_version": vocab.tokenizer_version,
        "tokenizer_kind": meta.get("kind"),
        "sequences_version": seq_version,
        "namespace": lake.namespace,
        "context": rcfg.context,
        "sequence": {"max_items": rcfg.window, "use_context": rcfg.context == "time",
                     "windows": rcfg.windows, "stride": rcfg.stride},
        "model_config": None if rcfg.base_model else model_cfg.to_dict(),
        "base_model": spec.base_model,
        "training": training,
        "run_id": run_id,
    }
    model_dir = save_recommender_dir(lake, model, vocab, info=info, metrics=metrics, token_map=token_map,
                                     tokenizer=tokenizer, run_id=run_id)
    log(f"best epoch {best_row['epoch'] + 1} (valid Recall@10 {best_row[SCORE]:.4f}); "
        f"{metrics['parameters']:,} parameters; model {model_dir}")
    return RecommenderOutcome(model_dir, metrics, table, vocab.table_version, users)


def _best_checkpoint(result) -> tuple[Any, dict[str, Any]]:
    """The retained checkpoint with the highest validation Recall@10 (ties: the earliest epoch)."""
    candidates = [(c, m) for c, m in (result.best_checkpoints or []) if m and SCORE in m]
    if not candidates:
        raise RuntimeError("the training run reported no checkpoint with a validation Recall@10")
    return max(candidates, key=lambda cm: (cm[1][SCORE], -cm[1]["epoch"]))
