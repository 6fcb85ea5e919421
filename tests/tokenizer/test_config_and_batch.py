import numpy as np
import pytest
import torch

from simcit.tokenizer import (RQKMeansConfig, RQVAEConfig, SimCITConfig, ViewBatch, build_tokenizer,
                              config_class)


def test_configs_reject_bad_values_with_the_field_name():
    with pytest.raises(ValueError, match="views"):
        SimCITConfig(views={})
    with pytest.raises(ValueError, match="views.text"):
        SimCITConfig(views={"text": 0})
    with pytest.raises(ValueError, match="codebook_size"):
        SimCITConfig(views={"text": 8}, codebook_size=1)
    with pytest.raises(ValueError, match="gumbel_tau"):
        SimCITConfig(views={"text": 8}, gumbel_tau=0.0)
    with pytest.raises(ValueError, match="encoder_dtype"):
        SimCITConfig(views={"text": 8}, encoder_dtype="float16")
    with pytest.raises(ValueError, match="input_views"):
        RQVAEConfig(views={"text": 8}, input_views=("image",))
    with pytest.raises(ValueError, match="beta"):
        RQVAEConfig(views={"text": 8}, beta=-1.0)
    with pytest.raises(ValueError, match="iters"):
        RQKMeansConfig(views={"text": 8}, iters=0)


def test_config_defaults_follow_the_paper():
    cfg = SimCITConfig(views={"text": 384})
    assert (cfg.hidden_dims, cfg.latent_dim, cfg.levels, cfg.codebook_size) == ((512, 384, 256), 128, 3, 256)
    assert (cfg.gumbel_tau, cfg.temperature, cfg.codeword_reg_weight) == (0.2, 0.07, 1.0)


def test_configs_load_through_the_typed_yaml_builder():
    typed_config = pytest.importorskip("simcit.typed_config")
    cfg = typed_config.build(SimCITConfig, {"views": {"text": 384, "geo": 64}, "hidden_dims": [64, 32]})
    assert cfg.hidden_dims == (64, 32) and cfg.views == {"text": 384, "geo": 64}
    rq = typed_config.build(RQVAEConfig, {"views": {"text": 8, "cf": 4}, "input_views": ["text"]})
    assert rq.used_views == ("text",)


def test_build_tokenizer_checks_kind_and_config():
    assert build_tokenizer("simcit", SimCITConfig(views={"a": 4})).kind == "simcit"
    assert build_tokenizer("rqvae", RQVAEConfig(views={"a": 4})).kind == "rqvae"
    assert build_tokenizer("rqkmeans", RQKMeansConfig(views={"a": 4})).kind == "rqkmeans"
    assert config_class("rqvae") is RQVAEConfig
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        build_tokenizer("vq", SimCITConfig(views={"a": 4}))
    with pytest.raises(TypeError, match="RQVAEConfig"):
        build_tokenizer("rqvae", SimCITConfig(views={"a": 4}))


def test_same_seed_same_initial_weights_without_touching_global_rng():
    cfg = SimCITConfig(views={"a": 4}, hidden_dims=(8,), latent_dim=4, codebook_size=4, seed=3)
    state = torch.random.get_rng_state()
    a, b = build_tokenizer("simcit", cfg), build_tokenizer("simcit", cfg)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), name


def test_view_batch_from_numpy_marks_nan_rows_absent_and_zeroes_them():
    text = np.ones((3, 2), dtype=np.float32)
    geo = np.array([[1.0, 2.0], [np.nan, np.nan], [3.0, 4.0]], dtype=np.float32)
    batch = ViewBatch.from_numpy({"text": text, "geo": geo})
    assert batch.present["geo"].tolist() == [True, False, True]
    assert batch.present["text"].all()
    assert torch.equal(batch.features["geo"][1], torch.zeros(2))
    explicit = ViewBatch.from_numpy({"geo": np.ones((2, 2))}, present={"geo": np.array([True, False])})
    assert explicit.present["geo"].tolist() == [True, False] and explicit.features["geo"].dtype == torch.float32


def test_view_batch_validates_shapes():
    with pytest.raises(ValueError, match="batch size"):
        ViewBatch.dense({"a": torch.zeros(3, 2), "b": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match="present"):
        ViewBatch({"a": torch.zeros(3, 2)}, {"a": torch.ones(3)})
    batch = ViewBatch.dense({"a": torch.arange(6.0).view(3, 2)})
    assert batch.select(torch.tensor([2, 0])).features["a"][:, 0].tolist() == [4.0, 0.0]
    assert ViewBatch.concat([batch, batch]).batch_size == 6
