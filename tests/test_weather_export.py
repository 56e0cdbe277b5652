"""A network trained with the lead days' weather exports with ``forecast_with_weather`` and
``forecast_products_with_weather`` beside the unchanged ``serving_default`` (real training,
evaluation, gate and export on tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soilcast.contract import (
    FORECAST_INPUT,
    OUTPUT_BY_LEAD,
    PRODUCTS_SIGNATURE,
    SIGNATURE,
    VALID_DOY,
    WEATHER_PRODUCTS_SIGNATURE,
    WEATHER_SIGNATURE,
    serving_inputs,
)
from soilcast.forecasting import perfect_weather
from soilcast.ml.predict import physical_pair
from soilcast.testing.config import BLESS_ANYTHING, tiny_config
from soilcast.testing.stages import (
    evaluate,
    export_blessed,
    export_json_path,
    load_tensors,
    run_dir,
    run_gate,
    train_model,
)
from soilcast.testing.synthetic import write_synthetic_store

FED = {"window": {"antecedent_soil_moisture": True, "target": "increment", "leads": [1, 3],
                  "forecast_weather": "forecast"},
       "training": {"epochs": 1, "models": ["fc"]},
       "gate": BLESS_ANYTHING}  # bless whatever trained: the export is tested


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("fedexport"), FED)
    write_synthetic_store(cfg)
    train_model(cfg, "fc", verbose=0)
    metrics = evaluate(cfg)
    assert {"fc", "fc+perfect"} <= set(metrics.scored())  # no archive given: no fc+forecast
    decision = run_gate(cfg)
    assert decision.blessed and decision.network == "fc"
    return cfg, export_blessed(cfg)


def test_the_bundle_has_the_weather_signatures_and_says_how_to_feed_them(exported):
    import tensorflow as tf

    cfg, path = exported
    loaded = tf.saved_model.load(str(path))
    assert {SIGNATURE, PRODUCTS_SIGNATURE, WEATHER_SIGNATURE, WEATHER_PRODUCTS_SIGNATURE} <= set(loaded.signatures)
    _, kwargs = loaded.signatures[WEATHER_SIGNATURE].structured_input_signature
    assert set(kwargs) == {"meteo", "antecedent_soil_moisture", FORECAST_INPUT}
    assert list(kwargs[FORECAST_INPUT].shape) == [None, 2, *cfg.grid.shape, len(cfg.variables)]
    _, plain = loaded.signatures[SIGNATURE].structured_input_signature
    assert set(plain) == {"meteo", "antecedent_soil_moisture"}  # unchanged for old clients
    meta = json.loads((path / "assets.extra" / "soilcast_metadata.json").read_text())
    assert meta["forecast_weather"] == "forecast" and meta["served_feed"] == "past"
    assert meta["weather_input"]["signature"] == WEATHER_SIGNATURE and meta["weather_input"]["leads"] == [1, 3]


def test_served_weather_forecast_equals_the_keras_graph_and_reads_the_weather(exported):
    import tensorflow as tf

    cfg, path = exported
    t = load_tensors(cfg)
    ends = np.array([800, 900, 1000])
    x = serving_inputs(t.X, t.Y, ends, cfg.window.seq_len, True)
    w = perfect_weather(t.X, ends, cfg.window.leads)
    loaded = tf.saved_model.load(str(path))
    fed = loaded.signatures[WEATHER_SIGNATURE](**{k: tf.constant(v) for k, v in {**x, FORECAST_INPUT: w}.items()})
    past = loaded.signatures[SIGNATURE](**{k: tf.constant(v) for k, v in x.items()})
    plain, weather = physical_pair(cfg, run_dir(cfg, "fc"), "fc")
    m = cfg.forecast.quantiles.index(0.5)  # the served value is the median of the graph's quantiles
    np.testing.assert_allclose(fed[OUTPUT_BY_LEAD].numpy(), weather.predict_on_batch({**x, FORECAST_INPUT: w})[:, :, m],
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(past[OUTPUT_BY_LEAD].numpy(), plain.predict_on_batch(x)[:, :, m], rtol=1e-4, atol=1e-6)
    doy = tf.constant(np.zeros((3, 2), np.int32))
    prod = loaded.signatures[WEATHER_PRODUCTS_SIGNATURE](
        **{k: tf.constant(v) for k, v in {**x, FORECAST_INPUT: w}.items()}, **{VALID_DOY: doy})
    np.testing.assert_allclose(prod["soil_moisture"].numpy(), fed[OUTPUT_BY_LEAD].numpy(), rtol=1e-6)
    np.testing.assert_allclose(prod["quantiles"].numpy(), weather.predict_on_batch({**x, FORECAST_INPUT: w}),
                               rtol=1e-4, atol=1e-6)  # and the quantiles, with the weather


def test_infra_validation_served_the_weather_signature_too_and_the_card_says_so(exported):
    cfg, path = exported
    record = json.loads(export_json_path(cfg).read_text())
    errors = record["infra_validation"]["relative_errors"]
    assert f"{WEATHER_SIGNATURE}.{OUTPUT_BY_LEAD}" in errors and OUTPUT_BY_LEAD in errors
    assert max(errors.values()) <= record["infra_validation"]["rtol"]
    card = (path / "assets.extra" / "model_card.md").read_text()
    assert "forecast_with_weather" in card and "fc+perfect" in card


def test_a_champion_served_with_forecasts_is_rescored_with_them(exported, tmp_path):
    """The gate compares like with like: a champion chosen WITH the forecast archive is
    re-scored through forecast_with_weather with the archive's runs (here the observed
    weather, so it must score exactly as evaluation's fc+perfect on validation)."""
    import shutil

    import pytest

    from soilcast.data.forecast_store import _dataset, _write
    from soilcast.evaluation.gate import champion_numbers
    from soilcast.ml.windows import split_ends
    from soilcast.records import Leaderboard
    from soilcast.testing.stages import metrics_path

    cfg, path = exported
    t = load_tensors(cfg)
    ends = split_ends(cfg, t.time, "val")
    store = tmp_path / "forecasts.zarr"
    n = len(ends)
    _write(_dataset(cfg, perfect_weather(t.X, ends, cfg.window.leads), t.time[ends], cfg.window.leads,
                    ["f"] * n, ["ecmf"] * n, ["demo"] * n), store)
    models = tmp_path / "models"
    shutil.copytree(path.parent, models)
    meta_file = models / path.name / "assets.extra" / "soilcast_metadata.json"
    meta = json.loads(meta_file.read_text())
    past = champion_numbers(cfg, cfg.paths.processed, models, forecasts=store)
    assert past["feed"] == "past"  # served without forecasts: scored without
    meta_file.write_text(json.dumps({**meta, "served_feed": "forecast"}))
    fed = champion_numbers(cfg, cfg.paths.processed, models, forecasts=store)
    assert fed["feed"] == "forecast", fed
    want = Leaderboard.read(metrics_path(cfg))
    for k, block in fed["by_lead"].items():
        assert block["rmse"] == pytest.approx(want["fc+perfect"].val[k]["rmse"], rel=1e-4)
        assert block["rmse"] != past["by_lead"][k]["rmse"]  # the weather reached the network
