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


# ---- a config that cannot switch off its own checks -------------------------------------------

def _edited(tmp_path: Path, old: str, new: str) -> Path:
    """params.yaml with one line edited as text (what YAML itself gives: .nan, duplicate keys)."""
    text = PARAMS.read_text()
    assert text.count(old) == 1, old
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_nan_bound_in_yaml_is_refused_naming_the_key(tmp_path):
    """The probe: ``valid_range: [.nan, 340.0]`` compared False with every value, so an ingest
    let t2m of -15..29 "K" through."""
    path = _edited(tmp_path, "valid_range: [180.0, 340.0]", "valid_range: [.nan, 340.0]")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "variables.1.valid_range.0: Input should be a finite number (got nan)" in str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ({"target": {"physical_range": [0.0, float("inf")]}}, "target.physical_range.1"),
        ({"target": {"valid_range": [float("-inf"), 0.8]}}, "target.valid_range.0"),
        ({"scaling": {"target_range": [float("nan"), 0.9]}}, "scaling.target_range.0"),
        ({"gate": {"max_regression": float("inf")}}, "gate.max_regression"),  # switched the regression check off
        ({"gate": {"min_skill_vs_best_reference": float("nan")}}, "gate.min_skill_vs_best_reference"),
        ({"gate": {"min_crps_skill_vs_best_reference": float("-inf")}}, "gate.min_crps_skill_vs_best_reference"),
        ({"promotion": {"margin": float("inf")}}, "promotion.margin"),
        ({"serving": {"poll_seconds": float("inf")}}, "serving.poll_seconds"),
        ({"grid": {"res": float("nan")}}, "grid.res"),
        ({"forecast_error": {"rain_log_sd": {"per_day": float("inf")}}}, "forecast_error.rain_log_sd.per_day"),
    ],
)
def test_non_finite_numbers_are_refused_everywhere(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, override)
    assert f"{key}: Input should be a finite number" in str(err.value)


def test_a_network_section_cannot_hold_a_non_finite_number_either(tmp_path):
    raw = read_params(PARAMS)
    net, key = next((n, k) for n, sec in raw["models"].items() for k, v in sec.items() if isinstance(v, float))
    raw["models"][net][key] = float("nan")
    with pytest.raises(ConfigError) as err:
        registry.check(load_config(_write(tmp_path, raw)))
    assert f"models.{net}.{key}: Input should be a finite number" in str(err.value)


def test_year_pairs_must_be_ordered():
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, {"demo": {"forecast_archive": {"years": [2019, 2017]}}})
    assert "demo.forecast_archive: years: end year 2017 is before start year 2019" in str(err.value)


def test_the_size_estimate_follows_the_stages():
    from soilcast.config import CLIP_CENTRE_BYTES, footprint

    cfg = load_config(PARAMS)
    fp = footprint(cfg)
    assert (fp.height, fp.width, fp.days, fp.channels) == (31, 31, 3652, 8)  # 7 variables + the target
    assert fp.store_bytes == 3652 * 31 * 31 * 8 * 4  # X and Y, float32
    assert fp.stages["clip"].bytes == 31 * 31 * CLIP_CENTRE_BYTES
    assert fp.stages["stack"].bytes == 2 * 366 * 31 * 31 * 8 * 4  # one time chunk, twice
    # train holds the store and its scaled inputs (7 + antecedent + mask), state and 7 lead targets
    assert fp.stages["train"].bytes == 3652 * 31 * 31 * (8 + 9 + 1 + 7) * 4
    assert fp.largest[0] == "train"
    fraction = footprint(load_config(PARAMS, {"basins": {"cell_rule": "fraction"}}))
    assert fraction.stages["clip"].bytes > 30 * fp.stages["clip"].bytes  # a shapely box per cell


def test_grid_shape_is_its_axes_without_building_them():
    for grid in ({}, {"res": 0.5}, {"res": 0.25, "lat_min": 6.5, "lat_max": 38.5, "lon_min": 66.5, "lon_max": 100.0}):
        g = load_config(PARAMS, {"grid": grid}).grid
        assert g.shape == (len(g.lats), len(g.lons))


def test_a_config_bigger_than_the_machine_is_refused_naming_grid_res():
    from soilcast.config import GIB, check_memory

    cfg = load_config(PARAMS)
    assert check_memory(cfg, 1 * GIB).largest[0] == "train"  # 0.33 GiB fits
    with pytest.raises(ConfigError) as err:
        check_memory(cfg, GIB // 4, source="p.yaml")
    msg = str(err.value)
    assert msg.startswith("p.yaml: invalid configuration\n  grid.res: 1.0 deg makes a 31 x 31 grid")
    assert "train would hold ~0.3 GiB at once" in msg and "machine's memory (0.2 GiB, given)" in msg
    check_memory(cfg, GIB // 4, stages=["clip", "regrid", "stack"])  # the data stages fit


def test_a_grid_whose_rasters_cannot_fit_is_refused_at_load():
    """The probe: ``grid.res: 0.0001`` passed and clip died allocating 335 GiB without naming the key."""
    from soilcast.config import GIB, config_from_dict

    raw = read_params(PARAMS)
    raw["grid"]["res"] = 0.0001
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, "p.yaml", memory=64 * GIB)
    msg = str(err.value)
    assert "grid.res: 0.0001 deg makes a 300001 x 300001 grid" in msg
    assert "clip would hold ~1760.2 GiB at once" in msg and "(64.0 GiB, given)" in msg
    with pytest.raises(ConfigError, match="grid.res: 0.0001 deg"):  # this machine's memory, by default
        load_config(PARAMS, {"grid": {"res": 0.0001}})
    raw["grid"]["res"] = 0.05  # 601 x 601: the rasters fit; training may not (check-config says so)
    assert config_from_dict(raw, "p.yaml", memory=1 * GIB).grid.shape == (601, 601)


def test_check_config_prints_the_estimate_and_refuses_what_does_not_fit(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from soilcast import config
    from soilcast.cli import app

    run = CliRunner().invoke(app, ["check-config", "--params", str(PARAMS)])
    assert run.exit_code == 0 and "size: store 0.10 GiB (X, Y float32); most held at once: train 0.33 GiB" in run.output
    monkeypatch.setattr(config, "machine_memory", lambda: (config.GIB // 4, "test"))
    run = CliRunner().invoke(app, ["check-config", "--params", str(PARAMS)])
    assert run.exit_code == 2 and "grid.res: 1.0 deg" in run.output and "(0.2 GiB, test)" in run.output


@pytest.mark.parametrize(
    "old, new, says",
    [
        ("\nseed: 42\n", "\nseed: 42\nseed: 7\n", "duplicate key 'seed' at line 4 (first given at line 3)"),
        ("  res: 1.0\n", "  res: 1.0\n  res: 0.5\n", "duplicate key 'grid.res' at line"),
        ("source_name: t2m,  source_units: K,", "source_name: t2m,  source_units: K, source_name: tp,",
         "duplicate key 'variables.1.source_name' at line 36"),
    ],
)
def test_a_duplicated_yaml_key_is_refused_naming_it_and_its_line(tmp_path, old, new, says):
    with pytest.raises(ConfigError) as err:
        load_config(_edited(tmp_path, old, new))
    assert "params.yaml: not valid YAML: " + says in str(err.value)


def test_yaml_merge_keys_may_still_override():
    from soilcast.config import yaml_load

    assert yaml_load("a: &x {k: 1, j: 2}\nb:\n  <<: *x\n  k: 3\n") == {"a": {"k": 1, "j": 2}, "b": {"k": 3, "j": 2}}
    assert yaml_load('{"a": 1, "b": {"a": 2}}') == {"a": 1, "b": {"a": 2}}  # the same key in two mappings


def test_two_specs_reading_one_source_field_are_refused_naming_both(tmp_path):
    raw = read_params(PARAMS)
    raw["variables"][2]["source_name"] = "t2m"
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, raw))
    assert "variables.2 (d2m) and variables.1 (t2m) both read source_name 't2m' from era5/{var}_{year}.nc" \
        in str(err.value)
    raw = read_params(PARAMS)
    raw["target"]["source_name"] = "t2m"  # another product (era5land): another field
    assert load_config(_write(tmp_path, raw)).target.source_name == "t2m"
    raw["sources"]["target"] = dict(raw["sources"]["met"])  # the same files: the same field
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, raw))
    assert "target (swvl1) and variables.1 (t2m) both read source_name 't2m'" in str(err.value)
