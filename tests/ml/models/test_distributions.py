"""The probabilistic references: the climatological distribution of the valid day and
persistence plus climatological increments, fitted on the training years only."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from soilcast.contract import calendar_bin

LEADS = [1, 3, 7]
NAMES = ("clim_distribution", "persistence_increments")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """Both references fitted once on the synthetic store (16x16, 2010-2013), leads 1, 3, 7."""
    from soilcast.data.store import open_tensors
    from soilcast.ml.models.references import reference_forecasters
    from soilcast.testing.config import tiny_config
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path_factory.mktemp("dists"), {"window": {"leads": LEADS}})
    t = open_tensors(write_synthetic_store(cfg))
    return cfg, t, reference_forecasters(cfg, t, NAMES)


def _random_block(seed: int = 0, constant: bool = False) -> SimpleNamespace:
    """A 3x4 store over 2010-2013 with two cells outside the mask: iid daily values, or one
    value per cell for ever (``constant``: every change is zero)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2010-01-01", "2013-12-31", freq="D")
    mask = np.ones((3, 4), bool)
    mask[0, 0] = mask[2, 3] = False
    shape = (1 if constant else len(time), 3, 4, 1)
    Y = np.broadcast_to(rng.uniform(0.1, 0.4, shape), (len(time), 3, 4, 1)).astype(np.float32)
    Y = np.where(mask[None, :, :, None], Y, np.nan).astype(np.float32)
    return SimpleNamespace(Y=Y, time=time, mask=mask)


def test_registered_as_probabilistic_references_only():
    from soilcast.ml.models.references import benchmark_names, probabilistic_benchmark_names, references

    assert probabilistic_benchmark_names() == NAMES
    refs = references()
    for name in NAMES:
        assert refs[name].probabilistic and not refs[name].benchmark and refs[name].context is None
        assert name not in benchmark_names()
    assert not any(refs[n].probabilistic for n in benchmark_names())


def test_quantiles_are_ordered_masked_and_their_median_is_the_forecast(fitted):
    from soilcast.ml.windows import split_ends

    cfg, t, refs = fitted
    ends = split_ends(cfg, t.time, "val")
    Q = len(cfg.forecast.quantiles)
    for name, f in refs.items():
        assert f.leads == tuple(LEADS) and f.levels == tuple(cfg.forecast.quantiles)
        q = f.forecast_quantiles(t, ends)
        assert q.shape == (len(ends), len(LEADS), Q, *t.mask.shape) and q.dtype == np.float32, name
        inside = q[..., t.mask]
        assert np.isfinite(inside).all() and np.isnan(q[..., ~t.mask]).all(), name
        assert (np.diff(inside, axis=2) >= 0).all(), name
        lo, hi = cfg.target.physical_range
        assert inside.min() >= lo and inside.max() <= hi, name
        np.testing.assert_array_equal(f.forecast(t, ends), q[:, :, cfg.forecast.quantiles.index(0.5)], name)


def test_persistence_increments_beat_the_climatological_distribution_at_day_one(fitted):
    """Soil moisture is persistent: today's value plus its typical change is the sharper and
    better fan at day 1, while the climatological fan covers about its nominal share."""
    from soilcast.evaluation.probabilistic import coverage, crps
    from soilcast.forecasting import observations
    from soilcast.ml.windows import split_ends

    cfg, t, refs = fitted
    ends = split_ends(cfg, t.time, "val")
    obs = observations(t, ends, LEADS)[:, 0][..., t.mask].reshape(-1)
    levels = cfg.forecast.quantiles
    scores = {}
    for name, f in refs.items():
        q = np.moveaxis(f.forecast_quantiles(t, ends)[:, 0][..., t.mask], 1, -1).reshape(-1, len(levels))
        scores[name] = crps(obs, q, levels)
        if name == "clim_distribution":
            assert coverage(obs, q, levels, 0.8) == pytest.approx(0.8, abs=0.15)
    assert scores["persistence_increments"] < 0.5 * scores["clim_distribution"]


def test_tables_are_fitted_on_training_years_only(fitted):
    from soilcast.ml.models.references import reference_forecasters

    cfg, t, refs = fitted
    later = t.time.year > cfg.split.train_years[1]
    Y = t.Y.copy()
    Y[later] = Y[later] * 0.5 + 0.1
    again = reference_forecasters(cfg, replace(t, Y=Y), NAMES)
    np.testing.assert_array_equal(again["clim_distribution"].table, refs["clim_distribution"].table)
    np.testing.assert_array_equal(again["persistence_increments"].increments, refs["persistence_increments"].increments)


def test_zero_increments_are_persistence(tiny_cfg):
    from soilcast.ml.models.distributions import fit_persistence_increments
    from soilcast.ml.models.references import PersistenceForecaster

    block = _random_block(constant=True)
    f = fit_persistence_increments(tiny_cfg, block)
    assert np.nanmax(np.abs(f.increments)) == 0.0
    ends = np.arange(400, 700, 7)
    q = f.forecast_quantiles(block, ends)
    want = PersistenceForecaster("persistence", f.leads).forecast(block, ends)
    for j in range(len(f.levels)):
        np.testing.assert_array_equal(q[:, :, j], want)
    np.testing.assert_array_equal(f.forecast(block, ends), want)


def _near(days: np.ndarray, valid_doy: int, half: int) -> np.ndarray:
    """Calendar days within ``half`` days (circularly) of any day of valid_doy's 5-day bin."""
    first = (min(valid_doy // 5, 72)) * 5
    span = np.arange(first, 366 if first == 360 else first + 5)
    diff = np.abs(days[:, None] - span[None, :])
    return np.minimum(diff, 366 - diff).min(axis=1) <= half


def test_clim_distribution_median_is_the_empirical_median_of_the_season(tiny_cfg):
    from soilcast.ml.models.distributions import fit_clim_distribution
    from soilcast.ml.windows import split_slice

    block = _random_block(seed=1)
    f = fit_clim_distribution(tiny_cfg, block)
    train = split_slice(block.time, tiny_cfg.split.train_years)
    days = calendar_bin(block.time[train])
    ends = np.array([block.time.get_loc(d) for d in ("2012-01-03", "2012-07-20", "2013-12-20")])
    median = f.forecast(block, ends)  # [N, K, H, W]
    half = tiny_cfg.climatology.window_days // 2
    for n, end in enumerate(ends):
        for k, lead in enumerate(f.leads):
            rows = _near(days, int(calendar_bin(block.time[end + lead : end + lead + 1])[0]), half)
            want = np.median(block.Y[train][rows, ..., 0], axis=0)
            np.testing.assert_allclose(median[n, k][block.mask], want[block.mask], rtol=1e-6)
    assert np.isnan(median[..., ~block.mask]).all()


def test_a_point_forecast_config_gives_one_level(tmp_path):
    from soilcast.ml.models.distributions import fit_clim_distribution, fit_persistence_increments
    from soilcast.testing.config import tiny_config

    cfg = tiny_config(tmp_path, {"forecast": {"quantiles": [0.5]}})
    block = _random_block(seed=2)
    ends = np.arange(800, 820)
    for fit in (fit_clim_distribution, fit_persistence_increments):
        f = fit(cfg, block)
        q = f.forecast_quantiles(block, ends)
        assert f.levels == (0.5,) and q.shape == (len(ends), len(f.leads), 1, 3, 4)
        np.testing.assert_array_equal(f.forecast(block, ends), q[:, :, 0])


def test_persistence_increments_are_clipped_to_the_physical_range():
    from soilcast.ml.models.distributions import PersistenceIncrementsForecaster

    block = _random_block(seed=3)
    inc = np.broadcast_to(np.array([-1.0, 0.0, 1.0], np.float32)[None, None, :, None, None], (2, 73, 3, 3, 4))
    f = PersistenceIncrementsForecaster("p", (1, 2), (0.1, 0.5, 0.9), inc, (0.0, 0.8))
    q = f.forecast_quantiles(block, np.array([10, 20]))
    inside = q[..., block.mask]
    assert (inside[:, :, 0] == 0.0).all() and (inside[:, :, 2] == 0.8).all()
    today = np.repeat(block.Y[[10, 20], ..., 0][:, None], 2, axis=1)  # [N, K, H, W]
    np.testing.assert_array_equal(inside[:, :, 1], today[..., block.mask])
