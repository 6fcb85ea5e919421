"""train-recommender and evaluate on a small synthetic lake, inside Ray Train (local Ray, CPU).

* 2 workers with DeepSpeed ZeRO-2, a worker failure injected at epoch 1: the run resumes from
  the epoch-0 checkpoint, learns the users' item cycle, exports the best-validation checkpoint;
  ``evaluate`` ranks every user with constrained beam search next to floors, appends
  ``eval_metrics`` rows, and refuses the model once the SID table has moved to a new version;
* a base checkpoint (a tiny Qwen2 saved by the test) fine-tuned with ``--base-model``.
"""
from __future__ import annotations

import json
import os
import sys

import polars as pl
import pyarrow as pa
import pytest
import ray.cloudpickle
import torch
import yaml
from transformers import Qwen2Config, Qwen2ForCausalLM

from simcit.cli import main, run_stage
from simcit.train.recommender_store import SIDTableMismatch, latest_recommender_dir, load_recommender_dir
from tests.conftest import NYC_CONFIG, REPO
from tests.train.synthetic_sequences import write_sequence_lake

pytestmark = pytest.mark.ray
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

RECOMMENDER = {
    "model": {"hidden_size": 64, "num_layers": 1, "num_heads": 2, "intermediate_size": 128},
    "window": 8, "windows": "sliding", "stride": 2, "batch_size": 16, "epochs": 6, "lr": 5e-3,
    "warmup_fraction": 0.0, "valid_users": 90, "patience": 6, "beam_size": 10, "max_failures": 1,
    "checkpoints_to_keep": 1, "deepspeed_config": str(REPO / "cluster" / "deepspeed_recommender.json"),
}
EVALUATE = {"beam_size": 20, "batch_users": 32, "baselines": ["mostpop", "markov"], "tune_users": 90}


def _config_file(tmp_path, **recommender) -> str:
    data = yaml.safe_load(NYC_CONFIG.read_text())
    data["recommender"] = {**RECOMMENDER, **recommender}
    data["evaluate"] = EVALUATE
    path = tmp_path / "rec.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_two_deepspeed_workers_resume_then_evaluate(tmp_path, local_ray, capsys):
    lake_root = tmp_path / "lake"
    world = write_sequence_lake(lake_root)
    # cache_mb=0: the rows stream from the lake every epoch (the path large tables take)
    config = _config_file(tmp_path, num_workers=2, strategy="deepspeed", fail_at_epoch=1, cache_mb=0)

    summary = run_stage("train-recommender", config, str(lake_root))
    model_dir = summary.extra["model_dir"]
    assert model_dir == latest_recommender_dir(world["lake"], "semantic_ids")
    metrics = json.loads(open(os.path.join(model_dir, "metrics.json")).read())
    assert metrics["resumed_at"] == [1]  # the injected failure was survived by resuming
    assert [r["epoch"] for r in metrics["epochs"]] == list(range(6))
    assert {r["world_size"] for r in metrics["epochs"]} == {2}
    assert {r["strategy"] for r in metrics["epochs"]} == {"deepspeed"}
    assert metrics["epochs"][-1]["train_loss"] < 0.5 * metrics["epochs"][0]["train_loss"]
    # every user walks a cycle: the successor of the last item is learnable
    assert metrics["best_valid_recall@10"] >= 0.8
    info = json.loads(open(os.path.join(model_dir, "recommender.json")).read())
    assert info["sid_table"] == "semantic_ids" and info["sid_table_version"] == 0

    capsys.readouterr()
    evaluation = run_stage("evaluate", config, str(lake_root))
    printed = capsys.readouterr().out
    assert "generative:" in printed and "markov" in printed and "best floor" in printed
    rows = pl.read_delta(str(lake_root / "nyc" / "eval_metrics"))
    assert rows["run_id"].unique().to_list() == [evaluation.extra["run_id"]]
    assert set(rows["split"]) >= {"valid", "test"}
    r10 = {(m, s): v for m, s, v in rows.filter((pl.col("metric") == "recall") & (pl.col("k") == 10))
           .select("model", "split", "value").iter_rows()}
    model = next(m for m, _ in r10 if m.startswith("generative:") and not m.endswith("+repeat"))
    assert r10[(model, "test")] >= 0.8 > r10[("mostpop", "test")]
    # the copy prior is tuned on valid users and reported beside the plain model; a tie keeps
    # the plain model, so it can only match or beat it on the users it was tuned on
    assert "repeat_prior" in evaluation.extra and f"{model}+repeat" in printed
    assert r10[(f"{model}+repeat", "valid")] >= r10[(model, "valid")] - 1e-9
    users = rows.filter((pl.col("metric") == "users") & (pl.col("split") == "test"))["value"].to_list()
    assert set(users) == {90.0}

    # A new version of the SID table: the model's tokens would now mean other items.
    lake = world["lake"]
    lake.write_table("semantic_ids", lake.dataset("semantic_ids").to_table())
    with pytest.raises(SIDTableMismatch, match="v0.*v1"):
        load_recommender_dir(model_dir, lake=lake, sid_table="semantic_ids")
    with pytest.raises(SIDTableMismatch):
        run_stage("evaluate", config, str(lake_root))


def test_base_model_checkpoint_gets_the_sid_tokens(tmp_path, local_ray):
    lake_root = tmp_path / "lake"
    write_sequence_lake(lake_root, n_users=40)
    base = tmp_path / "tiny-qwen2"
    torch.manual_seed(0)
    Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=256)).save_pretrained(base)
    config = _config_file(tmp_path, epochs=1, strategy="ddp")
    assert main(["train-recommender", "--config", config, "--lake", str(lake_root), "--base-model", str(base)]) == 0
    model_dir = latest_recommender_dir(type("L", (), {"root": str(lake_root), "namespace": "nyc"})(), "semantic_ids")
    loaded = load_recommender_dir(model_dir)
    vocab = loaded.vocab
    # no tokenizer in the checkpoint: our vocabulary is appended after its 50 rows
    assert loaded.token_map is not None and loaded.token_map.tolist() == [50 + i for i in range(vocab.vocab_size)]
    assert loaded.model.get_input_embeddings().num_embeddings == 50 + vocab.vocab_size
    assert json.loads(open(os.path.join(model_dir, "recommender.json")).read())["base_model"] == str(base)
    assert main(["evaluate", "--config", config, "--lake", str(lake_root)]) == 0
