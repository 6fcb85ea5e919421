"""The Ray Train worker loop of ``train-recommender`` (runs in every training worker).

Per worker: its shard of the users' training rows of ``sequences`` (Ray Data, streamed in Arrow
batches and turned into SID-token windows batch by batch, so memory does not grow with users),
the SID vocabulary (from the object store) and its share of the early-stopping users.

Every epoch ends with a validation Recall@10 / NDCG@10 by constrained beam search (users split
over workers, sums all-reduced) and a checkpoint: ``model.pt``, ``train_state.json`` and the
engine's state (optimizer / DeepSpeed ZeRO shards). Ray Train keeps the best checkpoints by
validation Recall@10; after a worker failure the group restarts and resumes from the latest one.
Training stops after ``patience`` epochs without a better validation Recall@10.
"""
from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from simcit.evaluation.metrics import metrics_from_ranks, ranks_from_topk
from simcit.recommender import (
    RecommenderConfig,
    SequenceCollator,
    SequenceConfig,
    SIDSequenceDataset,
    SIDVocabulary,
    build_model,
    load_base_model,
)
from simcit.recommender.generative import GenerativeRecommender
from simcit.recommender.length_grouping import length_grouped_batches, random_batches
from simcit.recommender.time_context import time_tokens
from simcit.train.recommender_data import SplitRows
from simcit.train.strategies import OptimSettings, make_engine
from simcit.train.worker import InjectedFailure, TrainState, report_epoch, restore_weights

SCORE = "valid_recall@10"
ROWS_PER_CHUNK = 512  # users turned into windows (and shuffled) together
ZERO3_UNSUPPORTED = (
    "ZeRO stage 3 is not supported for the recommender: validation decodes with the full module on "
    "every worker (constrained beam search with a KV cache), which stage 3 would partition. "
    "Use stage 0-2; the models this stage trains fit one device.")


@dataclass
class RecommenderSpec:
    """Everything a worker needs (plain values + object refs; travels as train_loop_config)."""

    vocab_ref: Any                # ObjectRef of SIDVocabulary.to_dict()
    valid_ref: Any                # ObjectRef of the early-stopping SplitRows
    model_config: dict[str, Any]  # RecommenderConfig fields (scratch model)
    base_model: Optional[str]     # local directory of a pretrained LM (every worker reads it)
    window: int
    windows: str
    stride: int
    context: str
    strategy: str
    batch_size: int
    epochs: int
    lr: float
    weight_decay: float
    warmup_fraction: float
    gradient_clipping: float
    steps_per_epoch: int          # estimate, for the lr schedule
    threads: int
    seed: int
    beam_size: int
    patience: int
    deepspeed_config: Optional[dict[str, Any]] = None
    fail_at_epoch: Optional[int] = None
    group_by_length: bool = True


def say(message: str) -> None:
    sys.stdout.write(f"[train-recommender] {message}\n")
    sys.stdout.flush()


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(values: list[float], op=None) -> list[float]:
    if not _is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=ray.train.torch.get_device())
    dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t.cpu().tolist()


def build_recommender(spec: RecommenderSpec, vocab: SIDVocabulary):
    """(model, token_map or None, tokenizer or None): a scratch model or a base checkpoint with
    the SID tokens added (same code path afterwards)."""
    if spec.base_model:
        base = load_base_model(spec.base_model, vocab)
        base.model.config._attn_implementation = "sdpa"  # tree masks of the decoder
        return base.model, base.token_map, base.tokenizer
    cfg = RecommenderConfig.from_dict(spec.model_config)
    return build_model(cfg, vocab), None, None


def sequence_config(spec: RecommenderSpec) -> SequenceConfig:
    return SequenceConfig(max_items=spec.window, use_context=spec.context == "time",
                          windows=spec.windows, stride=spec.stride)


def lm_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss, {"loss": float(out.loss.detach())}


def _windows_of_rows(rows, vocab_index, vocab: SIDVocabulary, seq_cfg: SequenceConfig, token_map,
                     context: str) -> tuple[SIDSequenceDataset, int]:
    """Training windows of one Arrow batch of users (history + target = the training part)."""
    d = rows.to_pydict()
    histories, contexts, unknown = [], [], 0
    for u in range(rows.num_rows):
        items = list(d["history"][u]) + [d["target"][u]]
        idx = vocab_index.get_indexer(items)
        keep = idx >= 0
        unknown += int((~keep).sum())
        histories.append(idx[keep].tolist())
        if context == "time":
            ts = list(d["history_ts"][u]) + [d["target_ts"][u]]
            contexts.append([c for c, k in zip(time_tokens(ts), keep) if k])
    data = SIDSequenceDataset(histories, vocab, seq_cfg, contexts if context == "time" else None, token_map)
    return data, unknown


def _batches(shard, vocab_index, vocab, seq_cfg, token_map, spec: RecommenderSpec, rng, collate,
             stats: dict[str, int]) -> Iterator[dict[str, torch.Tensor]]:
    for rows in shard.iter_batches(batch_size=ROWS_PER_CHUNK, batch_format="pyarrow",
                                   local_shuffle_buffer_size=4 * ROWS_PER_CHUNK,
                                   local_shuffle_seed=int(rng.integers(2**31))):
        if rows.num_rows == 0:
            continue
        data, unknown = _windows_of_rows(rows, vocab_index, vocab, seq_cfg, token_map, spec.context)
        stats["users"] += rows.num_rows
        stats["unknown_items"] += unknown
        batches = (length_grouped_batches(data.window_items(), spec.batch_size, rng) if spec.group_by_length
                   else random_batches(len(data), spec.batch_size, rng))
        for indices in batches:
            yield collate([data[int(i)] for i in indices])


def _in_lockstep(batches: Iterator) -> Iterator:
    """Stop every worker as soon as one runs out of batches: DDP / ZeRO all-reduce gradients
    every step, so all workers must take the same number of steps (shards differ in windows)."""
    for batch in batches:
        if _all_reduce([1.0], dist.ReduceOp.MIN if _is_distributed() else None)[0] < 1:
            return
        yield batch
    _all_reduce([0.0], dist.ReduceOp.MIN if _is_distributed() else None)
    # the others may still be waiting on a step's check: answer until everyone has stopped
    # (a worker that ran out answers 0 once; the MIN makes every worker see 0 at that step)


def validate(recommender: GenerativeRecommender, rows: SplitRows, k: int = 10) -> dict[str, float]:
    """Recall@k / NDCG@k over this worker's share of the validation users, summed over workers."""
    sums = [0.0, 0.0, 0.0]
    if len(rows):
        use_ts = recommender.context == "time"
        top = recommender.recommend_indices(rows.histories, k, rows.history_ts if use_ts else None,
                                            rows.target_ts if use_ts else None)
        targets = recommender.item_indices(rows.targets)
        ranks = ranks_from_topk(top, targets)
        per_user = metrics_from_ranks(ranks, [k])
        sums = [float(per_user[f"recall@{k}"].sum()), float(per_user[f"ndcg@{k}"].sum()), float(len(rows))]
    recall, ndcg, n = _all_reduce(sums)
    return {f"valid_recall@{k}": recall / n if n else float("nan"),
            f"valid_ndcg@{k}": ndcg / n if n else float("nan"), "valid_users": int(n)}


def epochs_without_improvement(history: list[dict[str, Any]]) -> int:
    """Epochs since the best validation Recall@10 (ties: the earlier epoch stays best)."""
    if not history:
        return 0
    scores = [r[SCORE] for r in history]
    best = int(np.argmax(scores))  # first maximum
    return len(history) - 1 - best


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    spec = RecommenderSpec(**config)
    logging.getLogger("ray.train.v2._internal.execution.context").setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, spec.threads))
    torch.manual_seed(spec.seed)  # identical initial weights on every worker
    device = ray.train.torch.get_device()

    vocab = SIDVocabulary.from_dict(ray.get(spec.vocab_ref))
    valid = ray.get(spec.valid_ref).part(rank, world)
    model, token_map, _ = build_recommender(spec, vocab)
    seq_cfg = sequence_config(spec)
    opt = OptimSettings(spec.lr, spec.weight_decay, spec.epochs * max(1, spec.steps_per_epoch),
                        spec.warmup_fraction, spec.batch_size, spec.gradient_clipping)

    state = TrainState()
    checkpoint = ray.train.get_checkpoint()
    resumed = checkpoint is not None
    with (checkpoint.as_directory() if resumed else contextlib.nullcontext()) as ckpt_dir:
        if resumed:
            state = restore_weights(ckpt_dir, model)
        model.to(device)
        engine = make_engine(spec.strategy, model, opt, world, device, spec.deepspeed_config, loss_fn=lm_loss,
                             zero3_unsupported=ZERO3_UNSUPPORTED)
        if resumed:
            engine.load(ckpt_dir)
            if rank == 0:
                say(f"resumed from the checkpoint of epoch {state.next_epoch - 1}")
    module = engine.module
    recommender = GenerativeRecommender(module, vocab, seq_cfg, token_map=token_map, beam_size=spec.beam_size,
                                        context=spec.context)
    collate = SequenceCollator(int(token_map[vocab.pad_id]) if token_map is not None else vocab.pad_id)

    train_shard = ray.train.get_dataset_shard("train")
    for epoch in range(state.next_epoch, spec.epochs):
        if epochs_without_improvement(state.history) >= spec.patience:
            break  # a resumed run that had already decided to stop
        if spec.fail_at_epoch == epoch and not resumed and rank == world - 1:
            raise InjectedFailure(f"injected worker failure (rank {rank}) at the start of epoch {epoch}")
        module.train()
        rng = np.random.default_rng([spec.seed, epoch, rank])
        stats = {"users": 0, "unknown_items": 0}
        loss_sum = tokens = 0.0
        steps = 0
        t0 = time.perf_counter()
        batches = _batches(train_shard, recommender._index, vocab, seq_cfg, token_map, spec, rng, collate, stats)
        for batch in _in_lockstep(batches):
            batch = {k: v.to(device) for k, v in batch.items()}
            metrics = engine.train_step(batch)
            n_tok = int((batch["labels"][:, 1:] != -100).sum())
            loss_sum += metrics["loss"] * n_tok
            tokens += n_tok
            steps += 1
        seconds = time.perf_counter() - t0
        for _ in batches:  # drain the shard: Ray Data expects each epoch's iterator to finish
            pass
        t_valid = time.perf_counter()
        module.eval()
        valid_metrics = validate(recommender, valid)
        valid_seconds = time.perf_counter() - t_valid
        loss_all, tokens_all, steps_all, users_all, unknown_all = _all_reduce(
            [loss_sum, tokens, float(steps), float(stats["users"]), float(stats["unknown_items"])])
        slowest = _all_reduce([seconds], dist.ReduceOp.MAX if _is_distributed() else None)[0]
        state.global_step += steps
        row: dict[str, Any] = {
            "epoch": epoch,
            "attempt": len(state.resumed_at),
            "train_loss": loss_all / tokens_all if tokens_all else float("nan"),
            **valid_metrics,
            "train_users": int(users_all),
            "train_steps": int(steps_all),
            "unknown_items": int(unknown_all),
            "tokens_per_s": tokens_all / slowest if slowest > 0 else float("nan"),
            "epoch_seconds": slowest,
            "valid_seconds": valid_seconds,
            "lr": engine.lr(),
            "global_step": state.global_step,
            "world_size": world,
            "strategy": spec.strategy,
        }
        if not math.isfinite(row["train_loss"]):
            raise RuntimeError(f"epoch {epoch}: training loss is {row['train_loss']} "
                               f"({int(tokens_all)} target tokens; is the sequences table empty?)")
        state.history.append(row)
        state.next_epoch = epoch + 1
        stale = epochs_without_improvement(state.history)
        if rank == 0:
            say(f"epoch {epoch + 1}/{spec.epochs} loss={row['train_loss']:.4f} "
                f"valid R@10={row[SCORE]:.4f} N@10={row['valid_ndcg@10']:.4f} ({row['valid_users']} users) "
                f"tokens/s={row['tokens_per_s']:,.0f} ({slowest:.1f}s train, {valid_seconds:.1f}s valid)"
                + (f"; no better valid R@10 for {stale} epoch(s)" if stale else " *best*"))
        report_epoch(engine, module, state, {**row, "resumed_at": list(state.resumed_at)}, rank)
        if stale >= spec.patience:
            if rank == 0:
                say(f"early stop: no better valid Recall@10 in {spec.patience} epoch(s)")
            break
    return {"history": state.history, "resumed_at": state.resumed_at}
