"""The reference forecasts: persistence, the training-years climatology and damped anomaly
persistence, each fitted once and forecasting every lead."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from soilcast.ml.models.references import Climatology, calendar_bin, persistence

SHAPE = (5, 6, 6, 7)  # L, H, W, C


def test_persistence_is_the_last_observed_day():
    Y = np.arange(20, dtype=np.float32).reshape(20, 1, 1) * np.ones((1, 2, 3), np.float32)
    ends = np.array([4, 9, 12])
    np.testing.assert_array_equal(persistence(Y, ends), Y[ends])


def test_climatology_is_exact_on_a_seasonal_cycle_from_training_years_only():
    time = pd.date_range("2010-01-01", "2013-12-31", freq="D")
    bins = calendar_bin(time)
    assert bins[time.get_loc("2012-03-01")] == bins[time.get_loc("2011-03-01")] == 60
    cycle = 0.2 + 0.1 * np.sin(2 * np.pi * np.arange(366) / 366)
    Y = np.repeat(cycle[bins][:, None, None], 4, axis=1).repeat(3, axis=2).astype(np.float32)
    Y[:, 0, 0] = np.nan  # outside the mask stays NaN
    later = time.year >= 2012
    Y2 = Y.copy()
    Y2[later] += 0.3  # val/test years must not matter
    clim = Climatology.fit(Y2, time, (2010, 2011), window_days=1)
    pred = clim.predict(time)
    leap_day = bins == 59  # no training year has Feb 29: interpolated from Feb 28 / Mar 1
    np.testing.assert_allclose(pred[~leap_day, 1:, 1:], Y[~leap_day, 1:, 1:], atol=1e-6)
    np.testing.assert_allclose(pred[leap_day, 1:, 1:], Y[leap_day, 1:, 1:], atol=1e-4)
    assert np.isnan(pred[:, 0, 0]).all()


def test_climatology_smoothing_is_circular():
    time = pd.date_range("2010-01-01", "2010-12-31", freq="D")
    Y = np.zeros((len(time), 1, 1), np.float32)
    Y[0] = 31.0  # one spike on Jan 1
    clim = Climatology.fit(Y, time, (2010, 2010), window_days=31)
    v = clim.values[:, 0, 0]
    assert v[0] == pytest.approx(1.0) and v[15] == pytest.approx(1.0) and v[16] == 0
    assert v[-15] == pytest.approx(1.0) and v[-16] == 0  # wraps into late December


# --------------------------------------------------------------------------- the lead axis


def test_damping_coefficients_by_hand():
    """phi_k = sum a[t] a[t+k] / sum a[t]^2 per cell, clipped to [0, 1]; 0 where the anomaly
    is undefined (outside the mask)."""
    from soilcast.ml.models.references import damping_coefficients

    a = np.array([[1, 2, 0, -1, 1],  # lead 1: (2+0+0-1)/(1+4+0+1) = 1/6; lead 2: (0-2+0)/5 < 0 -> 0
                  [2, 1, 1, 0, 1],  # lead 1: (2+1+0+0)/(4+1+1+0) = 1/2; lead 2: (2+0+1)/(4+1+1) = 1/2
                  [1, 2, 4, 8, 16]], float).T * 0.01  # amplifying: 2 and 4 -> clipped to 1
    clim = np.full((5, 1, 4), 0.2)
    Y = np.concatenate([clim[:, :, :3] + a[:, None, :], np.full((5, 1, 1), np.nan)], axis=-1)
    phi = damping_coefficients(Y, clim, [1, 2])
    assert phi.shape == (2, 1, 4) and phi.dtype == np.float32
    np.testing.assert_allclose(phi[:, 0], [[1 / 6, 0.5, 1.0, 0.0], [0.0, 0.5, 1.0, 0.0]], rtol=1e-6)


def test_damped_persistence_forecast_by_hand():
    """clim[t+k] + phi_k (Y[t] - clim[t]) for each init day t and lead k, NaN outside the mask."""
    from soilcast.ml.models.references import Climatology, DampedPersistenceForecaster

    time = pd.date_range("2011-03-01", periods=5)  # calendar bins 60..64
    values = np.zeros((366, 1, 2), np.float32)
    values[60:65, 0, 0] = [0.20, 0.22, 0.24, 0.26, 0.28]
    Y = np.zeros((5, 1, 2, 1), np.float32)
    Y[:, 0, 0, 0] = [0.25, 0.30, 0.20, 0.27, 0.33]
    Y[:, 0, 1, 0] = np.nan
    block = SimpleNamespace(Y=Y, time=time, mask=np.array([[True, False]]))
    phi = np.array([[[0.5, 0.5]], [[0.25, 0.25]]], np.float32)  # [K, H, W]
    f = DampedPersistenceForecaster("damped_persistence", (1, 2), Climatology(values), phi)
    out = f.forecast(block, np.array([1, 2]))
    assert out.shape == (2, 2, 1, 2)  # [N, K, H, W]
    # t = 1: anomaly 0.30 - 0.22 = 0.08 -> lead 1: 0.24 + 0.5 * 0.08; lead 2: 0.26 + 0.25 * 0.08
    # t = 2: anomaly 0.20 - 0.24 = -0.04 -> lead 1: 0.26 - 0.5 * 0.04; lead 2: 0.28 - 0.25 * 0.04
    np.testing.assert_allclose(out[:, :, 0, 0], [[0.28, 0.28], [0.24, 0.27]], atol=1e-6)
    assert np.isnan(out[:, :, 0, 1]).all()
    # the two limits: phi = 1 carries today's anomaly, phi = 0 is climatology
    ones = DampedPersistenceForecaster("d", (1, 2), Climatology(values), np.ones_like(phi)).forecast(block, np.array([1]))
    zeros = DampedPersistenceForecaster("d", (1, 2), Climatology(values), np.zeros_like(phi)).forecast(block, np.array([1]))
    np.testing.assert_allclose(ones[0, :, 0, 0], [0.24 + 0.08, 0.26 + 0.08], atol=1e-6)
    np.testing.assert_allclose(zeros[0, :, 0, 0], [0.24, 0.26], atol=1e-6)


def test_benchmarks_are_persistence_climatology_and_damped_persistence():
    from soilcast.ml.models.references import benchmark_names, context_references, references

    assert benchmark_names() == ("persistence", "climatology", "damped_persistence")
    assert {k: r.name for k, r in context_references().items()} == {"persistence": "persistence", "clim": "climatology"}
    assert "linear" in references() and "linear" not in benchmark_names()  # scored, not a benchmark


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Every registered reference fitted once on the synthetic store, leads 1, 3 and 7."""
    from soilcast.data.store import open_tensors
    from soilcast.ml.models.references import reference_forecasters
    from soilcast.testing.config import tiny_config
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path_factory.mktemp("refs"), {
        "window": {"leads": [1, 3, 7], "antecedent_soil_moisture": True, "target": "increment"}})
    t = open_tensors(write_synthetic_store(cfg))
    return cfg, t, reference_forecasters(cfg, t)


def test_every_reference_forecasts_every_lead(fitted):
    from soilcast.forecasting import observations
    from soilcast.ml.models.references import Climatology
    from soilcast.ml.windows import split_ends

    cfg, t, refs = fitted
    assert set(refs) == {"persistence", "climatology", "damped_persistence", "linear", "clim_distribution",
                         "persistence_increments"}
    ends = split_ends(cfg, t.time, "val")
    out = {n: f.forecast(t, ends) for n, f in refs.items()}
    for name, pred in out.items():
        assert refs[name].leads == (1, 3, 7)
        assert pred.shape == (len(ends), 3, *t.mask.shape) and pred.dtype == np.float32, name
        assert np.isfinite(pred[:, :, t.mask]).all() and np.isnan(pred[:, :, ~t.mask]).all(), name
    y = t.Y[..., 0]
    for k, lead in enumerate(cfg.window.leads):
        np.testing.assert_array_equal(out["persistence"][:, k][:, t.mask], y[ends][:, t.mask])
        clim = Climatology.from_config(cfg, t.Y, t.time).predict(t.time[ends + lead])
        np.testing.assert_allclose(out["climatology"][:, k][:, t.mask], clim[:, t.mask], rtol=1e-6)
    obs = observations(t, ends, cfg.window.leads)
    np.testing.assert_array_equal(obs[:, 2], y[ends + 7])


def test_damped_persistence_is_fitted_on_training_years_only(fitted):
    from soilcast.ml.models.references import Climatology, damping_coefficients, reference_forecasters
    from soilcast.ml.windows import split_ends, split_slice

    cfg, t, refs = fitted
    damped = refs["damped_persistence"]
    train = split_slice(t.time, cfg.split.train_years)
    clim = Climatology.from_config(cfg, t.Y, t.time)
    phi = damping_coefficients(t.Y[train][..., 0], clim.predict(t.time[train]), cfg.window.leads)
    np.testing.assert_allclose(damped.phi, phi, rtol=1e-6)
    inside = phi[:, t.mask]
    assert ((inside >= 0) & (inside <= 1)).all()
    assert inside[0].mean() > inside[1].mean() > inside[2].mean() > 0  # memory fades with lead
    # later years do not move it
    from dataclasses import replace

    Y = t.Y.copy()
    later = t.time.year > cfg.split.train_years[1]
    Y[later] = Y[later] * 0.5 + 0.1
    again = reference_forecasters(cfg, replace(t, Y=Y), ["damped_persistence"])["damped_persistence"]
    np.testing.assert_array_equal(again.phi, damped.phi)
    # least squares on the training anomalies: never worse than climatology there, at any lead
    ends = split_ends(cfg, t.time, "train")
    y = t.Y[..., 0]
    for k, lead in enumerate(cfg.window.leads):
        truth = y[ends + lead][:, t.mask]
        mse_damped = np.mean((damped.forecast(t, ends)[:, k][:, t.mask] - truth) ** 2)
        mse_clim = np.mean((refs["climatology"].forecast(t, ends)[:, k][:, t.mask] - truth) ** 2)
        assert mse_damped <= mse_clim, lead
