"""train-tokenizer: ``item_features`` -> a versioned tokenizer model directory.

Ray Train (``TorchTrainer``, DDP or DeepSpeed, N workers, local Ray or a cluster) streams the
items through Ray Data, keeps the checkpoint with the best hard-code validation loss and writes
``<lake>/<namespace>/_models/tokenizer/<kind>-<tokenizer_version>/`` plus ``LATEST_<kind>``.
See :mod:`simcit.train.trainer`.
"""
from __future__ import annotations

from simcit.stages.runtime import StageContext, StageSummary
from simcit.train.trainer import train_tokenizer


def run(ctx: StageContext) -> StageSummary:
    tcfg = ctx.cfg.tokenizer
    ctx.log(f"tokenizer {tcfg.kind} on views {tcfg.views}: {tcfg.num_workers} worker(s), strategy {tcfg.strategy}")
    outcome = train_tokenizer(ctx.cfg, ctx.lake, log=ctx.log, run_id=ctx.run_id)
    return ctx.summary(
        rows_in=outcome.rows_in,
        rows_out=1,
        versions={"item_features": outcome.table_version},
        extra={
            "tokenizer_version": outcome.saved.tokenizer_version,
            "best_epoch": outcome.metrics["best_epoch"],
            "model_dir": outcome.saved.model_dir,
        },
    )
