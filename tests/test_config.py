"""The config loader: params.yaml is valid, and bad params fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from soilcast.config import ConfigError, load_config, read_params
from tests.conftest import PARAMS


def _write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_repo_params_load_and_describe_the_method():
    cfg = load_config(PARAMS)
    assert cfg.period.n_days == 3652
    assert len(cfg.variables) == 7
    assert cfg.variable_names == ["tp", "t2m", "d2m", "u10", "v10", "ssrd", "sp"]
    assert cfg.models.convlstm.filters == 64 and cfg.models.convlstm.kernel_size == 3
    assert cfg.models.convlstm.n_hidden_layers == 4
    assert cfg.grid.shape == (31, 31)


def test_misspelt_key_is_named(tmp_path):
    raw = read_params(PARAMS)
    raw["training"]["epohcs"] = raw["training"].pop("epochs")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, raw))
    msg = str(err.value)
    assert "training.epohcs: unknown key" in msg
    assert "training.epochs" in msg  # and the now-missing key is named too


@pytest.mark.parametrize(
    "override, key",
    [
        ({"period": {"start": "2015-01-01", "end": "2012-01-01"}}, "period"),
        ({"window": {"lead_days": 0}}, "window.lead_days"),
        ({"training": {"batch_size": "eight"}}, "training.batch_size"),
        ({"split": {"val_years": [2009, 2009]}}, "split"),
        ({"scaling": {"target_range": [-1.0, 1.0]}}, "scaling"),
        ({"grid": {"res": -1}}, "grid.res"),
        ({"basins": {"cell_rule": "corner"}}, "basins.cell_rule"),
    ],
)
def test_impossible_values_fail_naming_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, override)
    assert key in str(err.value)


def test_unknown_top_level_section(tmp_path):
    raw = read_params(PARAMS)
    raw["trainig"] = {}
    with pytest.raises(ConfigError, match="trainig: unknown key"):
        load_config(_write(tmp_path, raw))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_no_defaults_outside_params():
    """Every field is required: a value can only come from params.yaml."""
    from soilcast.config import Config

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.is_required(), f"{model.__name__}.{name} has a default"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Config)


def test_grid_axes_are_cell_centres():
    cfg = load_config(PARAMS)
    assert cfg.grid.lats[0] == 7.5 and cfg.grid.lats[-1] == 37.5
    assert cfg.grid.lons[0] == 67.5 and cfg.grid.lons[-1] == 97.5
