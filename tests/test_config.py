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
