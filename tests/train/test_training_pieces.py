"""The parts of train-tokenizer that need no Ray: item split, Arrow -> ViewBatch, model configs,
the model store (round trip, versioning, tamper detection), lr schedule, CLI flags, best-checkpoint
selection."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pyarrow as pa
import pytest
import torch

from simcit.cli import _flag_overrides, build_parser
from simcit.config import TokenizerTrainingConfig, load_config
from simcit.lake import Lake
from simcit.tokenizer import RQKMeansConfig, SimCITConfig, build_tokenizer
from simcit.train.item_split import sample_mask, valid_mask
from simcit.train.lr_schedule import warmup_cosine_factor
from simcit.train.model_config import tokenizer_model_config
from simcit.train.model_store import (latest_tokenizer_dir, load_tokenizer, save_tokenizer,
                                      tokenizer_models_root)
from simcit.train.trainer import best_checkpoint_of
from simcit.train.view_batches import (infer_view_dims, sample_view_batch, select_items, select_sample,
                                      to_view_batch)
from simcit.typed_config import ConfigError
from tests.conftest import NYC_CONFIG
from tests.train.synthetic_features import DIMS, NO_VIEW_IDS, item_features_table


@pytest.fixture(scope="module")
def features():
    return item_features_table(n=300, seed=1)


def test_valid_mask_is_a_deterministic_function_of_the_id():
    ids = [f"poi-{i}" for i in range(20000)]
    mask = valid_mask(ids, 0.1)
    assert 0.09 < mask.mean() < 0.11
    shuffled = ids[:]
    random.Random(0).shuffle(shuffled)
    by_id = dict(zip(ids, mask))
    assert [by_id[i] for i in shuffled] == list(valid_mask(pa.array(shuffled), 0.1))
    # a larger fraction only adds items to the validation side
    assert not (mask & ~valid_mask(ids, 0.2)).any()


def test_the_kmeans_sample_is_a_function_of_id_and_seed():
    ids = [f"poi-{i}" for i in range(20000)]
    mask = sample_mask(ids, 0.05, seed=0)
    assert 0.04 < mask.mean() < 0.06
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    by_id = dict(zip(ids, mask))
    assert [by_id[i] for i in shuffled] == list(sample_mask(pa.array(shuffled), 0.05, seed=0))
    other = sample_mask(ids, 0.05, seed=1)
    assert (mask != other).any()  # another seed, another sample
    assert not (mask & valid_mask(ids, 0.05)).all()  # independent of the validation split
    assert sample_mask(ids, 1.0, seed=3).all() and not sample_mask(ids, 0.0, seed=3).any()


def test_rqkmeans_fit_on_a_sample_does_not_depend_on_row_or_block_order(features):
    """Ray Data streams blocks in no fixed order: the same seed must give the same codebooks."""
    table, _ = features
    sample = select_sample(table, fraction=0.7, seed=5)
    assert 0 < sample.num_rows < table.num_rows
    blocks = sample.to_batches(max_chunksize=37)
    reordered = [b.take(pa.array(np.random.default_rng(0).permutation(b.num_rows))) for b in blocks[::-1]]
    fits = []
    for batches in (blocks, reordered):
        vb, n = sample_view_batch(batches, DIMS)
        assert n == sample.num_rows
        model = build_tokenizer("rqkmeans", RQKMeansConfig(views=DIMS, levels=2, codebook_size=8, iters=5, seed=0))
        fits.append(model.fit(vb).quantizer.codebooks.detach().clone())
    assert torch.equal(fits[0], fits[1])


def test_to_view_batch_marks_nulls_absent_and_never_fills_them_as_data(features):
    table, raw = features
    batch = to_view_batch(table.slice(0, 300), DIMS)
    for view, x in raw.items():
        present = ~np.isnan(x).any(axis=1)
        assert np.array_equal(batch.present[view].numpy(), present)
        assert np.allclose(batch.features[view].numpy()[present], x[present])
        assert not batch.features[view][~torch.from_numpy(present)].any()  # placeholders only
    assert (~batch.present["text"]).any() and (~batch.present["cf"]).any()


def test_to_view_batch_rejects_wrong_dims_and_treats_nan_as_missing():
    emb = pa.list_(pa.field("element", pa.float32()))
    t = pa.table({"text_emb": pa.array([[1.0, 0.0], [float("nan"), 1.0], None], type=emb)})
    b = to_view_batch(t, {"text": 2})
    assert b.present["text"].tolist() == [True, False, False]
    assert not b.features["text"][1:].any()
    with pytest.raises(ValueError, match="expected 3-d"):
        to_view_batch(t, {"text": 3})


def test_select_items_splits_disjointly_and_drops_items_without_views(features):
    table, _ = features
    views = tuple(DIMS)
    train = select_items(table, part="train", views=views, valid_fraction=0.2)
    valid = select_items(table, part="valid", views=views, valid_fraction=0.2)
    train_ids, valid_ids = set(train["item_id"].to_pylist()), set(valid["item_id"].to_pylist())
    assert not train_ids & valid_ids
    assert train_ids | valid_ids == set(table["item_id"].to_pylist()) - set(NO_VIEW_IDS)
    assert 0.1 < len(valid_ids) / 300 < 0.3


def test_infer_view_dims_reports_empty_views(tmp_path, features):
    lake = Lake(tmp_path, "t")
    lake.write_table("item_features", features[0])
    dims, empty = infer_view_dims(lake.dataset("item_features"), ["text", "image", "geo", "cf"])
    assert dims == DIMS and empty == ["image"]


def test_model_config_from_the_tokenizer_section():
    tcfg = TokenizerTrainingConfig(levels=2, codebook_size=16, latent_dim=8, model={"hidden_dims": [32]})
    cfg = tokenizer_model_config(tcfg, DIMS)
    assert isinstance(cfg, SimCITConfig) and cfg.hidden_dims == (32,) and cfg.latent_dim == 8
    assert cfg.views == DIMS and cfg.levels == 2
    rq = tokenizer_model_config(TokenizerTrainingConfig(kind="rqkmeans", codebook_size=4), DIMS)
    assert isinstance(rq, RQKMeansConfig) and rq.codebook_size == 4
    with pytest.raises(ConfigError, match="tokenizer.model.*bogus"):
        tokenizer_model_config(TokenizerTrainingConfig(model={"bogus": 1}), DIMS)


def _small_simcit():
    model = build_tokenizer("simcit", SimCITConfig(views=DIMS, hidden_dims=(16,), latent_dim=8, levels=2,
                                                   codebook_size=8, kmeans_iters=3))
    return model


def test_model_store_round_trip_versioning_and_tamper_detection(tmp_path, features):
    table, _ = features
    batch = to_view_batch(table.slice(0, 300), DIMS)
    model = _small_simcit()
    model.init_codebooks(batch)
    lake = Lake(tmp_path, "nyc")
    root = tokenizer_models_root(lake)
    saved = save_tokenizer(model, root, metrics={"best_epoch": 3}, extra={"run_id": "r1"})
    assert saved.name == f"simcit-{saved.tokenizer_version}" and len(saved.tokenizer_version) == 16
    assert sorted(os.listdir(saved.model_dir)) == ["config.json", "metrics.json", "model.pt"]
    assert latest_tokenizer_dir(lake, "simcit") == saved.model_dir
    loaded, meta = load_tokenizer(saved.model_dir)
    assert not loaded.training and meta["kind"] == "simcit" and meta["views"] == DIMS
    assert meta["view_columns"] == {"text": "text_emb", "geo": "geo_emb", "cf": "cf_emb"}
    assert meta["run_id"] == "r1" and meta["tokenizer_version"] == saved.tokenizer_version
    assert torch.equal(loaded.codes(batch), model.codes(batch))
    # same weights + config -> same version; different weights -> another one
    assert save_tokenizer(model, root).tokenizer_version == saved.tokenizer_version
    with torch.no_grad():
        model.quantizer.codebooks[0, 0, 0] += 1.0
    other = save_tokenizer(model, root)
    assert other.tokenizer_version != saved.tokenizer_version
    assert latest_tokenizer_dir(root, "simcit") == other.model_dir
    # a model.pt that no longer matches its version is refused
    state = torch.load(os.path.join(saved.model_dir, "model.pt"))
    state["quantizer.codebooks"] += 0.5
    torch.save(state, os.path.join(saved.model_dir, "model.pt"))
    with pytest.raises(ValueError, match="content hash"):
        load_tokenizer(saved.model_dir)
    with pytest.raises(FileNotFoundError, match="rqvae"):
        latest_tokenizer_dir(lake, "rqvae")


def test_rqkmeans_round_trip(tmp_path, features):
    batch = to_view_batch(features[0].slice(0, 300), DIMS)
    model = build_tokenizer("rqkmeans", RQKMeansConfig(views=DIMS, levels=2, codebook_size=8, iters=3)).fit(batch)
    saved = save_tokenizer(model, str(tmp_path))
    loaded, meta = load_tokenizer(saved.model_dir)
    assert meta["kind"] == "rqkmeans" and torch.equal(loaded.codes(batch), model.codes(batch))
    assert json.load(open(os.path.join(saved.model_dir, "config.json")))["codebook_size"] == 8


def test_warmup_then_cosine():
    factors = [warmup_cosine_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5, abs=0.02)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:])) and factors[-1] < 0.01


def test_cli_flags_map_onto_the_tokenizer_section():
    args = build_parser().parse_args(["train-tokenizer", "--config", str(NYC_CONFIG), "--tokenizer", "rqvae",
                                      "--num-workers", "2", "--strategy", "deepspeed",
                                      "--address", "ray://head:10001"])
    cfg = load_config(args.config, args.overrides + _flag_overrides(args))
    t = cfg.tokenizer
    assert (t.kind, t.num_workers, t.strategy, t.ray_address) == ("rqvae", 2, "deepspeed", "ray://head:10001")
    assert _flag_overrides(build_parser().parse_args(["train-tokenizer", "--config", "c"])) == []


class _Ckpt:
    def __init__(self, name):
        self.name = name


class _Result:
    def __init__(self, rows):
        self.best_checkpoints = [(_Ckpt(f"e{r['epoch']}"), r) for r in rows]


def test_best_checkpoint_is_the_lowest_hard_code_validation_loss_not_the_last():
    rows = [{"epoch": 0, "valid_loss": 3.0}, {"epoch": 1, "valid_loss": 1.5},
            {"epoch": 2, "valid_loss": 1.5}, {"epoch": 3, "valid_loss": 2.0}]
    ckpt, metrics = best_checkpoint_of(_Result(rows))
    assert ckpt.name == "e1" and metrics["epoch"] == 1  # ties: the earlier epoch
    with pytest.raises(RuntimeError):
        best_checkpoint_of(_Result([]))
