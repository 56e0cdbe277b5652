"""The config loader: params.yaml is valid, and bad params fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from soilcast.config import ConfigError, load_config, read_params
from soilcast.ml.models import registry
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
    convlstm = registry.params(registry.check(cfg), "convlstm")
    assert convlstm.filters == 64 and convlstm.kernel_size == 3
    assert convlstm.n_hidden_layers == 4
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
        ({"window": {"leads": [0]}}, "window.leads"),
        ({"window": {"leads": [3, 1]}}, "window.leads"),
        ({"window": {"leads": [1, 1]}}, "window.leads"),
        ({"window": {"leads": []}}, "window.leads"),
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


@pytest.mark.parametrize(
    "override, key",
    [
        ({"training": {"epochs": True}}, "training.epochs: Input should be a valid integer (got True)"),
        ({"training": {"epochs": "8"}}, "training.epochs: Input should be a valid integer (got '8')"),
        ({"window": {"antecedent_soil_moisture": "yes"}},
         "window.antecedent_soil_moisture: Input should be a valid boolean (got 'yes')"),
        ({"training": {"learning_rate": "0.002"}}, "training.learning_rate: Input should be a valid number"),
        ({"split": {"test_years": [2018, "2019"]}}, "split.test_years.1: Input should be a valid integer"),
        ({"period": {"start": 2010}}, "period.start"),
    ],
)
def test_types_are_strict(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, override)
    assert key in str(err.value)


def test_window_longer_than_a_split_names_the_split():
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, {"window": {"seq_len": 400}})
    msg = str(err.value)
    assert "window.seq_len + max(window.leads) = 400 + 7 = 407 days do not fit split.val_years 2017-2017 " \
           "(365 days in the period)" in msg
    assert len(msg.splitlines()) == 2 and "serving" not in msg and len(msg) < 300  # no config dump
    load_config(PARAMS, {"window": {"seq_len": 358}})  # 358 + 7 = 365 days: exactly one window fits
    with pytest.raises(ConfigError, match=r"358 \+ 8 = 366 days do not fit"):  # the LONGEST lead counts
        load_config(PARAMS, {"window": {"seq_len": 358, "leads": [1, 8]}})


def test_the_lead_axis_and_its_derived_sizes():
    cfg = load_config(PARAMS)
    assert cfg.window.leads == [1, 2, 3, 4, 5, 6, 7]
    assert cfg.window.max_lead == 7 and cfg.window.n_leads == 7
    short = load_config(PARAMS, {"window": {"leads": [1, 3, 10]}}).window
    assert short.max_lead == 10 and short.n_leads == 3


def test_replaced_keys_name_their_replacement():
    """A params.yaml written before the lead axis fails saying what to write instead."""
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, {"window": {"lead_days": 1}})
    msg = str(err.value)
    assert "window: lead_days (1) was replaced by leads" in msg and "[1] is the old lead_days: 1" in msg
    for old in ("min_skill_vs_climatology", "min_skill_vs_persistence"):
        with pytest.raises(ConfigError) as err:
            load_config(PARAMS, {"gate": {old: 0.0}})
        assert f"gate: {old} replaced by min_skill_vs_best_reference" in str(err.value)


def test_errors_never_quote_a_whole_section(tmp_path):
    raw = read_params(PARAMS)
    del raw["training"]["epochs"]
    raw["serving"] = "nope"
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, raw))
    msg = str(err.value)
    assert "training.epochs: Field required" in msg and "serving: Input should be" in msg
    assert "learning_rate" not in msg  # the training section is not dumped


def test_yaml_values_load_as_written_and_round_trip(tmp_path):
    from soilcast.config import save_config

    cfg = load_config(PARAMS)
    assert cfg.variables[5].name == "ssrd" and cfg.variables[5].valid_range == (0.0, 4.5e7)  # `4.5e7`
    save_config(cfg, tmp_path / "p.yaml")
    assert load_config(tmp_path / "p.yaml") == cfg
    text = (tmp_path / "p.yaml").read_text()
    assert "'2010-01-01'" in text
    (tmp_path / "q.yaml").write_text(text.replace("'2010-01-01'", "2010-01-01"))
    assert load_config(tmp_path / "q.yaml") == cfg  # an unquoted YAML date is a date too


def test_variable_transforms_are_params_not_names():
    cfg = load_config(PARAMS)
    assert [v.name for v in cfg.variables if v.transform == "log1p"] == ["tp"]
    variables = cfg.to_dict()["variables"]
    variables[0]["transform"] = "sqrt"
    with pytest.raises(ConfigError, match=r"variables\.0\.transform: Input should be 'none' or 'log1p'"):
        load_config(PARAMS, {"variables": variables})
    with pytest.raises(ConfigError, match=r"target\.transform is 'log1p': the target is min-max scaled"):
        load_config(PARAMS, {"target": {"transform": "log1p"}})


def test_the_default_seasons_are_imds_four_and_cover_the_year_once():
    ev = load_config(PARAMS).evaluation
    assert ev.seasons == {"winter_jf": [1, 2], "premonsoon_mam": [3, 4, 5], "monsoon_jjas": [6, 7, 8, 9],
                          "postmonsoon_ond": [10, 11, 12]}
    assert (ev.wet_season, ev.dry_season) == ("monsoon_jjas", "premonsoon_mam")


@pytest.mark.parametrize(
    "seasons, extra, says",
    [
        ({"a": [1, 2, 3, 4, 5, 6], "b": [6, 7, 8, 9, 10, 11, 12]}, {}, "month 6 is in both 'a' and 'b'"),
        ({"a": [1, 2, 3, 4, 5, 6], "b": [7, 8, 9, 10, 11]}, {}, "months [12] are in no season"),
        ({"a": list(range(1, 13)), "b": []}, {}, "seasons.b: no months"),
        ({"a": list(range(0, 12)), "b": [12]}, {}, "month 0 is not 1..12"),
        ({"Wet Season": list(range(1, 13))}, {}, "name 'Wet Season'"),
        ({"a": list(range(1, 13))}, {"wet_season": "monsoon"}, "wet_season: 'monsoon' is not one of seasons ['a']"),
    ],
)
def test_seasons_that_do_not_partition_the_year_fail_naming_the_month(tmp_path, seasons, extra, says):
    raw = read_params(PARAMS)
    raw["evaluation"].update({"seasons": seasons, "wet_season": "a", "dry_season": "a", **extra})
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, raw))
    assert "evaluation" in str(err.value) and says in str(err.value)


@pytest.mark.parametrize("scale, says", [({"rmse": [0.05, 0.0]}, "scales.rmse"), ({"skill": [0.0, 1.0]}, "diverging"),
                                         ({"anomaly": [-0.1, float("inf")]}, "finite")])
def test_figure_scales_must_be_ordered_finite_and_diverging_around_zero(scale, says):
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, {"evaluation": {"figures": {"scales": scale}}})
    assert says in str(err.value)
