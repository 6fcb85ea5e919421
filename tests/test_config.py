import os
from pathlib import Path

import pytest
import yaml

from simcit.config import load_config
from simcit.typed_config import ConfigError
from tests.conftest import NYC_CONFIG, SCIENTIFIC_CONFIG


def test_bundled_configs_load_and_resolve_paths():
    nyc = load_config(NYC_CONFIG)
    assert nyc.namespace == "nyc"
    assert Path(nyc.resolve(nyc.dataset.items)).exists()
    assert nyc.features.geo.enabled and nyc.dataset.item_columns.latitude == "latitude"
    sci = load_config(SCIENTIFIC_CONFIG)
    assert not sci.features.geo.enabled
    assert sci.dataset.interaction_columns.ts_format == "ordinal"
    assert Path(sci.resolve(sci.dataset.interactions)).exists()


def _write(tmp_path, mutate):
    data = yaml.safe_load(NYC_CONFIG.read_text())
    mutate(data)
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_unknown_key_names_the_key(tmp_path):
    p = _write(tmp_path, lambda d: d["features"]["geo"].update(dimm=32))
    with pytest.raises(ConfigError, match=r"config\.features\.geo: unknown key\(s\) \['dimm'\]"):
        load_config(p)


def test_wrong_type_names_the_key(tmp_path):
    p = _write(tmp_path, lambda d: d["features"]["cf"].update(window="three"))
    with pytest.raises(ConfigError, match=r"config\.features\.cf\.window: expected an integer"):
        load_config(p)


def test_missing_required_key(tmp_path):
    p = _write(tmp_path, lambda d: d["dataset"].pop("items"))
    with pytest.raises(ConfigError, match=r"config\.dataset\.items: required key is missing"):
        load_config(p)


def test_bad_literal_and_range(tmp_path):
    p = _write(tmp_path, lambda d: d["dataset"]["interaction_columns"].update(ts_format="epoch"))
    with pytest.raises(ConfigError, match="ts_format: must be one of"):
        load_config(p)
    p = _write(tmp_path, lambda d: d["features"]["geo"].update(ring_resolution=19))
    with pytest.raises(ConfigError, match="ring_resolution must be an H3 resolution"):
        load_config(p)


def test_overrides_are_typed():
    cfg = load_config(NYC_CONFIG, ["features.geo.dim=32", "sequences.collapse_repeats=true"])
    assert cfg.features.geo.dim == 32 and cfg.sequences.collapse_repeats is True
    with pytest.raises(ConfigError, match="features.geo.dim: expected an integer"):
        load_config(NYC_CONFIG, ["features.geo.dim=abc"])


def test_recommender_sections_and_the_sid_table_they_use(tmp_path):
    cfg = load_config(NYC_CONFIG)
    assert cfg.sid_table() == "semantic_ids"
    assert load_config(NYC_CONFIG, ["assign_ids.table_tag=rqvae_s0"]).sid_table() == "semantic_ids__rqvae_s0"
    # an explicit recommender.sid_table wins over the assign-ids tag
    both = load_config(NYC_CONFIG, ["assign_ids.table_tag=rqvae", "recommender.sid_table=semantic_ids__simcit"])
    assert both.sid_table() == "semantic_ids__simcit"
    with pytest.raises(ConfigError, match="sid_table"):
        load_config(NYC_CONFIG, ["recommender.sid_table=items"])
    with pytest.raises(ConfigError, match="baselines"):
        load_config(NYC_CONFIG, ["evaluate.baselines=[popularity]"])


def test_cli_flags_become_overrides_of_their_stage(tmp_path):
    from simcit.cli import _flag_overrides, build_parser

    args = build_parser().parse_args(["train-recommender", "--config", "c.yaml", "--num-workers", "2",
                                      "--strategy", "ddp", "--base-model", "models/qwen", "--sid-table",
                                      "semantic_ids__rqvae"])
    overrides = _flag_overrides(args)
    assert 'recommender.num_workers=2' in overrides and 'recommender.strategy="ddp"' in overrides
    assert f'recommender.base_model="{os.path.abspath("models/qwen")}"' in overrides  # relative to the cwd
    assert 'recommender.sid_table="semantic_ids__rqvae"' in overrides
    args = build_parser().parse_args(["train-tokenizer", "--config", "c.yaml", "--num-workers", "2"])
    assert _flag_overrides(args) == ["tokenizer.num_workers=2"]


def test_valid_users_limits_only_the_valid_split():
    from simcit.config import EvaluateConfig
    from simcit.stages.evaluate import _split_limit

    assert _split_limit(EvaluateConfig(), "valid") is None
    assert _split_limit(EvaluateConfig(valid_users=300), "valid") == 300
    assert _split_limit(EvaluateConfig(valid_users=300), "test") is None
    assert _split_limit(EvaluateConfig(valid_users=300, limit_users=100), "valid") == 100
    assert _split_limit(EvaluateConfig(valid_users=300, limit_users=1000), "test") == 1000
    with pytest.raises(ValueError, match="valid_users"):
        EvaluateConfig(valid_users=0)
