"""The reference forecasts: persistence and the training-years climatology."""

from __future__ import annotations

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
