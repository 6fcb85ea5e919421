"""train-tokenizer inside Ray Train (local Ray, CPU workers, gloo). Few fit() calls, shared:

* one 2-worker fit of a small check loop: gathered negatives give the single-process loss (and,
  through DDP, its gradient) on the concatenated batch; then one real DeepSpeed (ZeRO-2) engine
  step equals a single-process AdamW step;
* one 2-worker DeepSpeed run of the real stage with a worker failure injected at epoch 1: it
  resumes from the checkpoint of epoch 0, finishes, and exports the best-validation checkpoint;
* one RQ-KMeans run through the CLI.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

import pytest
import ray.cloudpickle
import torch
import yaml

from simcit.config import load_config
from simcit.lake import Lake
from simcit.tokenizer import SimCITConfig, SimCITTokenizer, ViewBatch, build_tokenizer
from simcit.train.model_config import config_from_dict
from simcit.train.model_store import latest_tokenizer_dir, load_tokenizer, tokenizer_models_root
from simcit.train.trainer import train_tokenizer
from simcit.train.view_batches import to_view_batch
from tests.conftest import NYC_CONFIG, REPO
from tests.train.synthetic_features import DIMS, item_features_table

pytestmark = pytest.mark.ray

# Workers cannot import the tests package: ship this module's functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

TOKENIZER = {
    "views": ["text", "geo", "cf"], "levels": 2, "codebook_size": 16, "latent_dim": 16, "batch_size": 64,
    "epochs": 2, "valid_fraction": 0.2, "lr": 2e-3, "warmup_fraction": 0.0, "sample_size": 2000,
    "model": {"hidden_dims": [32], "kmeans_iters": 5}, "max_failures": 1, "checkpoints_to_keep": 1,
}


@pytest.fixture(scope="module")
def features_lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_lake")
    table, _ = item_features_table(n=1200, seed=0)
    Lake(root, "nyc").write_table("item_features", table)
    return root, table


def _config_file(tmp_path, **tokenizer) -> str:
    data = yaml.safe_load(NYC_CONFIG.read_text())
    data["tokenizer"] = {**TOKENIZER, "deepspeed_config": str(REPO / "cluster" / "deepspeed_tokenizer.json"),
                         **tokenizer}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


# --- 1. gathered negatives and a DeepSpeed step, inside Ray Train workers -------------------

def _gather_check_loop(config):
    import tempfile

    import ray.train
    import torch
    import torch.distributed as dist

    from simcit.tokenizer import SimCITConfig, SimCITTokenizer
    from simcit.train.strategies import DDPEngine, DeepSpeedEngine, OptimSettings
    from simcit.train.view_batches import to_view_batch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(1)
    lo = sum(config["split"][:rank])
    local = to_view_batch(config["table"], config["dims"]).select(slice(lo, lo + config["split"][rank]))
    local64 = type(local)({k: v.double() for k, v in local.features.items()}, local.present)
    opt = OptimSettings(lr=1e-3, weight_decay=1e-2, total_steps=10, warmup_fraction=0.0, batch_size=64)

    # (a) DDP: loss with negatives gathered from both workers, gradient averaged by DDP
    model = SimCITTokenizer(SimCITConfig(**config["model"])).double()
    ddp = DDPEngine(model, opt, world, torch.device("cpu"))
    out = ddp.model(local64, noise=False)
    out.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    loss = out.loss.detach().clone()
    dist.all_reduce(loss)

    # (b) one step of a real DeepSpeed engine (ZeRO stage from the cluster JSON)
    ds = DeepSpeedEngine(SimCITTokenizer(SimCITConfig(**config["model"])), opt, world, torch.device("cpu"),
                         config["ds_config"])
    ds_out = ds.engine(local, noise=False)
    ds.engine.backward(ds_out.loss)
    ds.engine.step()
    params = {k: v.detach().clone() for k, v in ds.module.state_dict().items()}
    flat = torch.cat([v.flatten() for v in params.values()])
    spread = flat.clone()
    dist.all_reduce(spread, op=dist.ReduceOp.MAX)
    metrics = {"world": world, "rank_param_spread": float((spread - flat).abs().max()),
               "zero_stage": ds.zero_stage, "local_rows": int(local.batch_size)}
    with tempfile.TemporaryDirectory() as d:
        if rank == 0:
            torch.save({"loss": loss / world, "grads": grads, "params": params, "local_loss": out.loss.item()},
                       os.path.join(d, "check.pt"))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d) if rank == 0 else None)


def test_two_workers_gather_negatives_and_step_deepspeed_like_one_process(local_ray, features_lake, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    _, table = features_lake
    rows = table.slice(0, 70)  # uneven shards: 40 + 30 rows
    model_cfg = dict(views=DIMS, hidden_dims=(16,), latent_dim=8, levels=2, codebook_size=8, seed=3)
    ds_config = json.loads((REPO / "cluster" / "deepspeed_tokenizer.json").read_text())
    trainer = TorchTrainer(
        _gather_check_loop,
        train_loop_config={"table": rows, "dims": DIMS, "split": [40, 30], "model": model_cfg, "ds_config": ds_config},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="gather_check", storage_path=str(tmp_path)),
    )
    result = trainer.fit()
    assert result.error is None
    assert result.metrics["world"] == 2 and result.metrics["zero_stage"] == 2
    assert result.metrics["rank_param_spread"] == 0.0  # both ranks hold the same weights
    with result.checkpoint.as_directory() as d:
        got = torch.load(os.path.join(d, "check.pt"))

    full = to_view_batch(rows, DIMS)
    full64 = ViewBatch({k: v.double() for k, v in full.features.items()}, full.present)
    ref = SimCITTokenizer(SimCITConfig(**model_cfg)).double()
    out = ref(full64, noise=False)
    out.loss.backward()
    # the mean of the workers' losses is the single-process loss on the concatenated batch ...
    assert got["loss"].item() == pytest.approx(out.loss.item(), rel=1e-10)
    assert got["local_loss"] != pytest.approx(out.loss.item(), rel=1e-3)  # (not trivially)
    # ... and the DDP-averaged gradient is its gradient
    ref_grads = torch.cat([p.grad.flatten() for p in ref.parameters()])
    assert torch.allclose(got["grads"], ref_grads, rtol=1e-8, atol=1e-12)

    ref32 = SimCITTokenizer(SimCITConfig(**model_cfg))
    optim = torch.optim.AdamW(ref32.param_groups(1e-3, 1e-2))
    ref32(full, noise=False).loss.backward()
    optim.step()
    before = SimCITTokenizer(SimCITConfig(**model_cfg)).state_dict()
    for name, value in ref32.state_dict().items():
        assert not torch.equal(got["params"][name], before[name]), name  # the engine stepped
        assert torch.allclose(got["params"][name], value, atol=2e-6), name


# --- 2. the real stage: DeepSpeed, 2 workers, a worker failure, best checkpoint ------------

@pytest.fixture(scope="module")
def deepspeed_run(local_ray, features_lake, tmp_path_factory):
    root, _ = features_lake
    cfg = load_config(_config_file(tmp_path_factory.mktemp("cfg"), num_workers=2, strategy="deepspeed",
                                   fail_at_epoch=1))
    lines: list[str] = []
    outcome = train_tokenizer(cfg, Lake(root, "nyc"), log=lines.append)
    return outcome, root


def test_deepspeed_run_resumes_after_a_worker_failure(deepspeed_run):
    outcome, _ = deepspeed_run
    history = outcome.metrics["epochs"]
    assert [r["epoch"] for r in history] == [0, 1]            # continued, not restarted
    assert [r["attempt"] for r in history] == [0, 1]          # epoch 1 ran in the restarted group
    assert outcome.metrics["resumed_at"] == [1]
    assert history[1]["global_step"] == 2 * history[0]["global_step"] > 0
    assert all(r["strategy"] == "deepspeed" and r["world_size"] == 2 for r in history)
    # the checkpoints hold DeepSpeed's state: one ZeRO optimizer shard per worker, merged by Ray
    latest = outcome.result.checkpoint.path
    files = os.listdir(os.path.join(latest, "deepspeed", "ckpt"))
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= set(files)


def test_model_dir_contents_and_load_round_trip(deepspeed_run, features_lake):
    outcome, root = deepspeed_run
    lake = Lake(root, "nyc")
    model_dir = outcome.saved.model_dir
    assert model_dir == os.path.join(tokenizer_models_root(lake), f"simcit-{outcome.saved.tokenizer_version}")
    assert latest_tokenizer_dir(lake, "simcit") == model_dir
    assert sorted(os.listdir(model_dir)) == ["config.json", "metrics.json", "model.pt"]
    meta = json.load(open(os.path.join(model_dir, "config.json")))
    assert meta["kind"] == "simcit" and meta["views"] == DIMS and meta["levels"] == 2
    assert meta["source"] == {"namespace": "nyc", "table": "item_features", "version": 0}
    metrics = json.load(open(os.path.join(model_dir, "metrics.json")))
    assert metrics["best_epoch"] in (0, 1) and len(metrics["epochs"]) == 2
    for row in metrics["epochs"]:
        assert {"train_loss", "valid_loss", "items_per_s"} <= set(row)
        assert row["train_items"] + row["valid_items"] <= 1200

    # codes identical before (weights of the best checkpoint) and after (model dir) saving
    best_ckpt = next(c for c, m in outcome.result.best_checkpoints if m["epoch"] == metrics["best_epoch"])
    with best_ckpt.as_directory() as d:
        state = torch.load(os.path.join(d, "model.pt"))
    before = build_tokenizer("simcit", config_from_dict("simcit", meta["model_config"]))
    before.load_state_dict(state)
    loaded, _ = load_tokenizer(model_dir)
    batch = to_view_batch(features_lake[1].slice(0, 500), DIMS)
    assert torch.equal(loaded.codes(batch), before.codes(batch))


def test_export_is_the_best_validation_checkpoint(deepspeed_run):
    outcome, _ = deepspeed_run
    history = outcome.metrics["epochs"]
    best = min(history, key=lambda r: (r["valid_loss"], r["epoch"]))
    assert outcome.metrics["best_epoch"] == best["epoch"]
    assert outcome.metrics["best_valid_loss"] == pytest.approx(best["valid_loss"])
    # Ray kept the best checkpoint (num_to_keep=1 by score) besides the latest one
    kept = sorted(m["epoch"] for _, m in outcome.result.best_checkpoints)
    assert best["epoch"] in kept and len(kept) <= 2


# --- 3. RQ-KMeans through the CLI --------------------------------------------------------

def test_rqkmeans_through_the_cli(local_ray, features_lake, tmp_path, capsys):
    from simcit.cli import main

    root, table = features_lake
    config = _config_file(tmp_path, model={"iters": 5}, cache_mb=0)  # cache_mb=0: stream from the lake
    assert main(["train-tokenizer", "--config", config, "--lake", str(root), "--tokenizer", "rqkmeans"]) == 0
    summary = capsys.readouterr().out
    assert "rows_in=1,203 rows_out=1" in summary and "tokenizer_version=" in summary
    model, meta = load_tokenizer(latest_tokenizer_dir(Lake(root, "nyc"), "rqkmeans"))
    assert meta["kind"] == "rqkmeans" and meta["codebook_size"] == 16
    codes = model.codes(to_view_batch(table.slice(0, 200), DIMS))
    assert codes.shape == (200, 2) and int(codes.max()) < 16
