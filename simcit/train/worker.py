"""The Ray Train worker loop of ``train-tokenizer`` (runs in every training worker).

Per worker: its shard of the training items (``get_dataset_shard("train")``, streamed as Arrow
batches -> ViewBatch), its shard of the validation items, and for rank 0 a bounded sample of the
training items for the k-means codebook init (computed on rank 0, then broadcast).

Each epoch ends with a checkpoint reported to Ray Train: ``model.pt`` (the raw module's weights),
``train_state.json`` (next epoch, per-epoch history, where the run resumed) and the engine's own
state (optimizer / DeepSpeed shards). Ray Train keeps the best ones by the hard-code validation
loss and always the latest; after a worker failure it restarts the group and every worker
resumes from the latest checkpoint, continuing the epoch counter.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from simcit.tokenizer import build_tokenizer
from simcit.train.model_config import config_from_dict
from simcit.train.replayed_shard import ReplayedShard
from simcit.train.strategies import OptimSettings, broadcast_module, make_engine
from simcit.train.view_batches import sample_view_batch, to_view_batch

MODEL_FILE = "model.pt"
STATE_FILE = "train_state.json"
SAMPLE_DATASET = "kmeans_sample"


class InjectedFailure(RuntimeError):
    """Raised by the fault-injection hook (``tokenizer.fail_at_epoch``)."""


@dataclass
class WorkerSpec:
    """Everything a worker needs (plain values: it travels through Ray as train_loop_config)."""

    kind: str
    model_config: dict[str, Any]
    strategy: str
    batch_size: int
    epochs: int
    lr: float
    weight_decay: float
    warmup_fraction: float
    steps_per_epoch: int          # estimate (from the table's row count) for the lr schedule
    threads: int
    seed: int
    deepspeed_config: Optional[dict[str, Any]] = None
    shuffle_buffer: int = 0       # local shuffle buffer (rows); 0: stream order
    replay_shards: bool = False   # small tables: keep the first epoch's rows in memory (ReplayedShard)
    fail_at_epoch: Optional[int] = None


@dataclass
class TrainState:
    next_epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)  # epochs where a restarted group resumed

    def save(self, directory: str) -> None:
        with open(os.path.join(directory, STATE_FILE), "w") as fh:
            json.dump(asdict(self), fh, indent=1)

    @classmethod
    def load(cls, directory: str) -> "TrainState":
        with open(os.path.join(directory, STATE_FILE)) as fh:
            return cls(**json.load(fh))


def say(message: str) -> None:
    """One progress line to the driver's console (``print`` is patched by Ray Train V2 and would
    show every line twice)."""
    sys.stdout.write(f"[train-tokenizer] {message}\n")
    sys.stdout.flush()


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _iter_view_batches(shard, view_dims, batch_size: int, device, shuffle_buffer: int = 0,
                       seed: Optional[int] = None):
    """ViewBatches of a Ray Data shard or a :class:`ReplayedShard`."""
    source = shard if isinstance(shard, ReplayedShard) else ReplayedShard(shard, replay=False)
    for rows in source.batches(batch_size, shuffle_buffer, seed):
        if rows.num_rows:
            yield to_view_batch(rows, view_dims).to(device)


def _init_codebooks(model, spec: WorkerSpec, view_dims, rank: int, device) -> int:
    """k-means codebook init on rank 0 from the sampled training items, then broadcast."""
    n = 0
    if rank == 0:
        rows = ReplayedShard(ray.train.get_dataset_shard(SAMPLE_DATASET), replay=False).batches(8192)
        sample, n = sample_view_batch(rows, view_dims)  # item-id order: reproducible for a seed
        k = model.config.codebook_size
        if n < k:
            raise ValueError(f"k-means init needs at least codebook_size={k} training items, the sample has {n}")
        model.init_codebooks(sample.to(device))
    broadcast_module(model, src=0)
    return n


def _reduce(values: dict[str, float], op=None) -> dict[str, float]:
    """Sum (or ``op``) over workers of per-worker scalars. Keys are unioned first (a worker that
    saw no batch lacks the loss keys), so every worker sends the same vector."""
    if not _is_distributed():
        return dict(values)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(values))
    keys = sorted(set().union(*map(set, gathered)))
    # collectives run on the backend's device (CPU for gloo, the worker's GPU for NCCL)
    t = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64,
                     device=ray.train.torch.get_device())
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return dict(zip(keys, t.cpu().tolist()))


def _validate(module, shard, view_dims, spec: WorkerSpec, device) -> dict[str, float]:
    """Hard-code validation loss (in-batch negatives) weighted by items, and code usage."""
    sums: dict[str, float] = defaultdict(float)
    cfg = module.config
    usage = torch.zeros(cfg.levels, cfg.codebook_size, dtype=torch.float64, device=device)
    for batch in _iter_view_batches(shard, view_dims, spec.batch_size, device):
        out = module.validation_loss(batch)
        b = batch.batch_size
        for key, value in out.metrics.items():
            sums[key] += value * b
        sums["_items"] += b
        codes = module.codes(batch)
        for level in range(cfg.levels):
            usage[level] += torch.bincount(codes[:, level], minlength=cfg.codebook_size).double()
    if _is_distributed():
        dist.all_reduce(usage)
    sums = _reduce(dict(sums))
    items = sums.pop("_items", 0.0)
    metrics = {f"valid_{k}": v / items if items else float("nan") for k, v in sums.items()}
    metrics["valid_items"] = int(items)
    metrics["valid_code_usage"] = float((usage > 0).double().mean())  # mean over levels
    return metrics


def restore_weights(ckpt_dir: str, model) -> TrainState:
    """A restarted worker's state and weights from a Ray Train checkpoint directory (the engine's
    optimizer state is restored by ``engine.load`` once the engine exists)."""
    state = TrainState.load(ckpt_dir)
    state.resumed_at.append(state.next_epoch)
    model.load_state_dict(torch.load(os.path.join(ckpt_dir, MODEL_FILE), map_location="cpu", weights_only=True))
    return state


def report_epoch(engine, model, state: TrainState, metrics: dict[str, Any], rank: int) -> None:
    """``ray.train.report`` of an epoch's metrics with a checkpoint: weights + state from rank 0,
    the engine's files from every rank that writes some (ZeRO shards)."""
    with tempfile.TemporaryDirectory(prefix="simcit-ckpt-") as tmp:
        wrote = engine.save(tmp, rank)
        if rank == 0:
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(tmp, MODEL_FILE))
            state.save(tmp)
            wrote = True
        checkpoint = ray.train.Checkpoint.from_directory(tmp) if wrote else None
        ray.train.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    spec = WorkerSpec(**config)
    # Ray Train logs every report (with all metrics) at INFO; we print one line per epoch.
    logging.getLogger("ray.train.v2._internal.execution.context").setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, spec.threads))
    torch.manual_seed(spec.seed * 1000 + rank)  # Gumbel noise: independent per worker
    device = ray.train.torch.get_device()
    model = build_tokenizer(spec.kind, config_from_dict(spec.kind, spec.model_config))
    view_dims = dict(model.config.views)
    opt = OptimSettings(spec.lr, spec.weight_decay, spec.epochs * max(1, spec.steps_per_epoch),
                        spec.warmup_fraction, spec.batch_size)

    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    resumed = checkpoint is not None
    with (checkpoint.as_directory() if resumed else contextlib.nullcontext()) as ckpt_dir:
        if resumed:
            state = restore_weights(ckpt_dir, model)
        model.to(device)
        if not resumed and getattr(model.config, "kmeans_init", False):
            t0 = time.perf_counter()
            sample_items = _init_codebooks(model, spec, view_dims, rank, device)
            if rank == 0:
                say(f"k-means codebook init on {sample_items:,} sampled items in {time.perf_counter() - t0:.1f}s")
        engine = make_engine(spec.strategy, model, opt, world, device, spec.deepspeed_config)
        if resumed:
            engine.load(ckpt_dir)
            if rank == 0:
                say(f"resumed from the checkpoint of epoch {state.next_epoch - 1}")
    module = engine.module

    train_shard = ReplayedShard(ray.train.get_dataset_shard("train"), spec.replay_shards)
    valid_shard = ReplayedShard(ray.train.get_dataset_shard("valid"), spec.replay_shards)
    for epoch in range(state.next_epoch, spec.epochs):
        if spec.fail_at_epoch == epoch and not resumed and rank == world - 1:
            raise InjectedFailure(f"injected worker failure (rank {rank}) at the start of epoch {epoch}")
        module.train()
        sums: dict[str, float] = defaultdict(float)
        steps = items = 0
        compute = 0.0  # seconds inside train steps (the rest: waiting for / converting data)
        t0 = time.perf_counter()
        for batch in _iter_view_batches(train_shard, view_dims, spec.batch_size, device,
                                        spec.shuffle_buffer, spec.seed + 7919 * epoch + rank):
            t_step = time.perf_counter()
            for key, value in engine.train_step(batch).items():
                sums[key] += value
            compute += time.perf_counter() - t_step
            steps += 1
            items += batch.batch_size
        seconds = time.perf_counter() - t0
        lr = engine.lr()
        module.eval()
        valid = _validate(module, valid_shard, view_dims, spec, device)

        # Per-worker step means; each worker's loss is world x its share (contrastive
        # convention), so the mean over workers is the global loss.
        totals = _reduce({"steps": steps, "items": items, **{f"sum_{k}": v for k, v in sums.items()}})
        slowest = _reduce({"seconds": seconds, "compute": compute}, dist.ReduceOp.MAX if _is_distributed() else None)
        slowest, slowest_compute = slowest["seconds"], slowest["compute"]
        steps_all = max(1.0, totals.pop("steps"))
        items_all = int(totals.pop("items"))
        state.global_step += steps
        row: dict[str, Any] = {
            "epoch": epoch,
            "attempt": len(state.resumed_at),
            "train_loss": totals.get("sum_loss", float("nan")) / steps_all,
            **{f"train_{k[4:]}": v / steps_all for k, v in totals.items() if k != "sum_loss"},
            **valid,
            "train_items": items_all,
            "items_per_s": items_all / slowest if slowest > 0 else float("nan"),
            "compute_items_per_s": items_all / slowest_compute if slowest_compute > 0 else float("nan"),
            "epoch_seconds": slowest,
            "lr": lr,
            "global_step": state.global_step,
            "world_size": world,
            "strategy": spec.strategy,
        }
        if not math.isfinite(row.get("valid_loss", float("nan"))):
            raise RuntimeError(f"epoch {epoch}: validation loss is {row.get('valid_loss')} after "
                               f"{row['valid_items']} validation items (raise tokenizer.valid_fraction?)")
        state.history.append(row)
        state.next_epoch = epoch + 1
        if rank == 0:
            say(f"epoch {epoch + 1}/{spec.epochs} train_loss={row['train_loss']:.4f} "
                f"valid_loss(hard)={row['valid_loss']:.4f} code_usage={row['valid_code_usage']:.3f} "
                f"items/s={row['items_per_s']:,.0f} (compute {row['compute_items_per_s']:,.0f}; "
                f"{items_all:,} items, {slowest:.1f}s, lr={lr:.2e})")
        report_epoch(engine, module, state, {**row, "resumed_at": list(state.resumed_at)}, rank)
    return {"history": state.history, "resumed_at": state.resumed_at}
