"""The lead days' weather as a second input: batches carry it (with forecast errors and
no-forecast windows), the wrapped network without a forecast IS its body (what
``serving_default`` answers), and the served graph with a forecast reads it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soilcast.forecasting import perfect_weather
from soilcast.layout import RunDir
from soilcast.ml.losses import median_channels
from soilcast.ml.models.registry import build_model
from soilcast.ml.predict import physical_pair
from soilcast.ml.scaling import Scaler
from soilcast.ml.windows import WindowDataset, n_input_channels, prepare, split_ends
from soilcast.testing.config import tiny_config
from soilcast.testing.stages import load_tensors, train_model
from soilcast.testing.synthetic import write_synthetic_store

FED = {"window": {"antecedent_soil_moisture": True, "target": "increment", "leads": [1, 2, 4],
                  "forecast_weather": "forecast"},
       "forecast_error": {"dropout": 0.5}, "training": {"epochs": 1}}


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("fed"), FED)
    write_synthetic_store(cfg)
    t = load_tensors(cfg)
    scaler = Scaler.fit(t.X, t.Y, t.mask, slice(0, 700), cfg)
    return cfg, t, prepare(t, cfg, scaler, weather=True), scaler


def test_batches_carry_the_lead_days_weather_with_errors_and_no_forecast_windows(fed):
    cfg, t, data, scaler = fed
    ends = split_ends(cfg, t.time, "train")
    ds = WindowDataset(data, ends, cfg, train=True, steps=40, patch=8)
    flags = []
    for i in range(40):
        (x, w, has), y = ds[i]
        assert x.shape[1:] == (cfg.window.seq_len, 8, 8, n_input_channels(cfg))
        assert w.shape == (len(x), 3, 8, 8, len(cfg.variables)) and has.shape == (len(x), 1)
        assert not w[has[:, 0] == 0].any()  # no forecast: zeros
        flags.append(has[:, 0])
    assert 0.3 < np.concatenate(flags).mean() < 0.7  # forecast_error.dropout = 0.5
    # a batch is the same every time it is cut (a resumed run sees the same errors)
    assert all(np.array_equal(a, b) for a, b in zip(ds[3][0], ds[3][0]))
    # validation: always a forecast, which differs from the perfect weather more at lead 4
    val = WindowDataset(data, split_ends(cfg, t.time, "val")[:32], cfg, train=False)
    (x, w, has), _ = val[0]
    truth = scaler.scale_inputs(perfect_weather(t.X, val.ends[:len(x)], cfg.window.leads))
    assert has.all()
    err = np.abs(w - truth).mean(axis=(0, 2, 3, 4))
    assert err[0] > 0 and err[-1] > err[0], err


def test_without_a_forecast_the_network_is_its_body(fed):
    cfg, t, data, _ = fed
    L, (H, W) = cfg.window.seq_len, t.mask.shape
    model = build_model("convlstm", cfg, (L, H, W, n_input_channels(cfg)))
    body = model.get_layer("convlstm")
    for layer in model.layers:  # a head that does something
        if layer.name == "forecast_correction":
            layer.set_weights([np.full_like(v, 0.05) for v in layer.get_weights()])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, L, H, W, n_input_channels(cfg))).astype("float32")
    w = rng.normal(size=(2, 3, H, W, len(cfg.variables))).astype("float32")
    none = np.asarray(model.predict_on_batch([x, w, np.zeros((2, 1), "float32")]))
    median = median_channels(none, cfg.forecast.quantiles)  # the quantile head spreads the median
    np.testing.assert_allclose(median, np.asarray(body.predict_on_batch(x)), atol=1e-6)
    some = np.asarray(model.predict_on_batch([x, w, np.ones((2, 1), "float32")]))
    assert np.abs(some[:, -1] - none[:, -1]).max() > 1e-3  # the forecast step reads the weather
    np.testing.assert_allclose(some[:, :-1], none[:, :-1], atol=1e-6)  # earlier steps do not


def test_served_graphs_share_one_network_and_only_one_reads_the_forecast(fed):
    cfg, t, *_ = fed
    run = RunDir(train_model(cfg, "fc", verbose=0))
    assert json.loads(run.grid.read_text())["forecast_weather"] == "forecast"
    plain, weather = physical_pair(cfg, run, "fc")
    assert [i.name for i in plain.inputs] == ["meteo", "antecedent_soil_moisture"]
    assert [i.name for i in weather.inputs] == ["meteo", "antecedent_soil_moisture", "forecast_meteo"]
    ends = split_ends(cfg, t.time, "test")[:3]
    from soilcast.contract import serving_inputs

    x = serving_inputs(t.X, t.Y, ends, cfg.window.seq_len, True)
    truth = perfect_weather(t.X, ends, cfg.window.leads)
    a = np.asarray(weather.predict_on_batch({**x, "forecast_meteo": truth}))
    b = np.asarray(weather.predict_on_batch({**x, "forecast_meteo": truth * 1.5}))
    p = np.asarray(plain.predict_on_batch(x))
    assert a.shape == p.shape == (3, 3, len(cfg.forecast.quantiles), *t.mask.shape)
    assert np.nanmax(np.abs(a - b)) > 0  # the forecast changes the answer
    assert np.isnan(a[..., ~t.mask]).all() and np.isfinite(a[..., t.mask]).all()
    shared = {id(v) for v in plain.weights} & {id(v) for v in weather.weights}
    assert len(shared) == len(plain.weights)  # one set of weights


def test_training_on_a_reforecast_archive_reads_its_runs_and_needs_every_training_day(tmp_path):
    """train_on_archive: the batches carry the archive's runs (not the error model), and an
    archive missing a training day fails before any training, naming that day."""
    import pandas as pd

    from soilcast.data.forecast_store import _dataset, _write
    from soilcast.ml.train import archive_lookup

    cfg = tiny_config(tmp_path, {**FED, "sources": {"forecast": {"folder": "forecasts", "pattern": "*.grib2",
                                                                 "train_on_archive": True}}})
    write_synthetic_store(cfg)
    t = load_tensors(cfg)
    ends = np.arange(cfg.window.seq_len - 1, len(t.time) - cfg.window.max_lead)
    runs = perfect_weather(t.X, ends, cfg.window.leads) * 1.1  # a "reforecast": 10 % off the truth
    store = tmp_path / "forecasts.zarr"
    _write(_dataset(cfg, runs, t.time[ends], cfg.window.leads, ["f"] * len(ends), ["ecmf"] * len(ends),
                    ["demo"] * len(ends)), store)
    lookup = archive_lookup(cfg, t, store)
    some = ends[100:104]
    np.testing.assert_allclose(lookup(some), runs[100:104])
    scaler = Scaler.fit(t.X, t.Y, t.mask, slice(0, 700), cfg)
    data = prepare(t, cfg, scaler, weather=True, archive=lookup)
    w, has = data.feed.inputs(some, np.random.default_rng(0), train=False)
    np.testing.assert_allclose(w, scaler.scale_inputs(runs[100:104]), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="--forecasts"):
        archive_lookup(cfg, t, None)
    gap = tmp_path / "gap.zarr"
    keep = t.time[ends] != pd.Timestamp("2010-03-01")
    _write(_dataset(cfg, runs[keep], t.time[ends][keep], cfg.window.leads, ["f"] * int(keep.sum()),
                    ["ecmf"] * int(keep.sum()), ["demo"] * int(keep.sum())), gap)
    with pytest.raises(ValueError, match="2010-03-01"):
        archive_lookup(cfg, t, gap)


def test_one_body_pass_answers_every_feed_as_the_served_graphs_do(fed):
    """Evaluation's FeedGroup (the body run once, the head per feed) gives exactly what the
    two served graphs give: serving_default without a forecast, forecast_with_weather with one."""
    from types import SimpleNamespace

    from soilcast.contract import serving_inputs
    from soilcast.ml.predict import FeedGroup

    cfg, t, *_ = fed
    run = RunDir(train_model(cfg, "convlstm", verbose=0))
    plain, weather = physical_pair(cfg, run, "convlstm")
    leads = tuple(cfg.window.leads)
    sources = {"forecast": lambda b, e: perfect_weather(b.X, e, leads) * 1.05,
               "perfect": lambda b, e: perfect_weather(b.X, e, leads)}
    group = FeedGroup(cfg, run, "convlstm", sources)
    fcs = group.forecasters()
    assert list(fcs) == ["convlstm", "convlstm+forecast", "convlstm+perfect"]
    block = SimpleNamespace(X=t.X, Y=t.Y, mask=t.mask)
    ends = split_ends(cfg, t.time, "test")[:5]
    x = serving_inputs(t.X, t.Y, ends, cfg.window.seq_len, True)
    want = {"convlstm": plain.predict_on_batch(x),
            "convlstm+forecast": weather.predict_on_batch({**x, "forecast_meteo": sources["forecast"](block, ends)}),
            "convlstm+perfect": weather.predict_on_batch({**x, "forecast_meteo": sources["perfect"](block, ends)})}
    m = cfg.forecast.quantiles.index(0.5)
    for name, f in fcs.items():
        np.testing.assert_allclose(f.forecast_quantiles(block, ends), want[name], rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(f.forecast(block, ends), want[name][:, :, m], rtol=1e-5, atol=1e-6, err_msg=name)
    assert not np.allclose(want["convlstm+forecast"][..., t.mask], want["convlstm"][..., t.mask])
