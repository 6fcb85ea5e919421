"""train-recommender: ``sequences`` (training part) + a ``semantic_ids`` table -> a generative
recommender model directory tied to that table version.

Ray Train (``TorchTrainer``; DeepSpeed ZeRO-2 from ``cluster/deepspeed_recommender.json`` by
default, or DDP; N workers; local Ray or a cluster) with early stopping on validation Recall@10.
See :mod:`simcit.train.recommender_trainer`.
"""
from __future__ import annotations

from simcit.stages.runtime import StageContext, StageSummary
from simcit.train.recommender_trainer import train_recommender


def run(ctx: StageContext) -> StageSummary:
    rcfg = ctx.cfg.recommender
    ctx.log(f"recommender on {ctx.cfg.sid_table()}: {rcfg.num_workers} worker(s), strategy {rcfg.strategy}")
    outcome = train_recommender(ctx.cfg, ctx.lake, log=ctx.log, run_id=ctx.run_id)
    m = outcome.metrics
    return ctx.summary(
        rows_in=outcome.train_users,
        rows_out=1,
        versions={outcome.sid_table: outcome.sid_table_version},
        extra={
            "best_epoch": m["best_epoch"] + 1,
            "valid_recall@10": round(m["best_valid_recall@10"], 4),
            "epochs_run": m["epochs_run"],
            "model_dir": outcome.model_dir,
        },
    )
