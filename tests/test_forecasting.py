"""The one forecasting path: window ends in, [N, K, H, W] out, whatever forecasts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from soilcast.contract import ANTECEDENT, INPUT
from soilcast.forecasting import InputForecaster, lead_offsets, observations


def _block(T: int = 20, H: int = 3, W: int = 4, C: int = 2) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    mask = np.zeros((H, W), bool)
    mask[1:, 1:] = True
    Y = rng.uniform(0.1, 0.4, (T, H, W, 1)).astype(np.float32)
    Y[:, ~mask] = np.nan
    return SimpleNamespace(X=rng.normal(size=(T, H, W, C)).astype(np.float32), Y=Y, mask=mask,
                           time=pd.date_range("2019-01-01", periods=T, freq="D"))


def test_observations_are_the_valid_days_of_every_lead():
    block = _block()
    ends, leads = np.array([5, 9]), (1, 3, 7)
    obs = observations(block, ends, leads)
    assert obs.shape == (2, 3, 3, 4)
    assert lead_offsets(ends, leads).tolist() == [[6, 8, 12], [10, 12, 16]]
    np.testing.assert_array_equal(obs[1, 2], block.Y[16, ..., 0])


def test_input_forecaster_batches_windows_and_masks_the_output():
    block, seen = _block(), []

    def predict(x):  # lead k: the last antecedent day plus k
        seen.append(len(x[INPUT]))
        assert x[INPUT].shape[1:] == (4, 3, 4, 2) and x[ANTECEDENT].shape[1:] == (4, 3, 4)
        return x[ANTECEDENT][:, -1][:, None] + np.array([1.0, 2.0])[None, :, None, None]

    f = InputForecaster("toy", (1, 2), predict, seq_len=4, antecedent=True, batch=3)
    ends = np.arange(3, 10)
    pred = f.forecast(block, ends)
    assert seen == [3, 3, 1]
    assert pred.shape == (7, 2, 3, 4) and pred.dtype == np.float32
    assert np.isnan(pred[:, :, ~block.mask]).all()
    np.testing.assert_allclose(pred[:, 1][:, block.mask], block.Y[ends][:, block.mask, 0] + 2.0, rtol=1e-6)


def test_a_one_lead_model_answers_on_a_lead_axis_of_one():
    """Exports from before the lead axis return soil_moisture [b, H, W]."""
    block = _block()
    f = InputForecaster("old", (1,), lambda x: np.ones((len(x[INPUT]), 3, 4)), seq_len=2, antecedent=False, batch=8)
    assert f.forecast(block, np.array([2, 3])).shape == (2, 1, 3, 4)


def test_a_forecaster_with_the_wrong_lead_axis_is_refused_naming_it():
    block = _block()
    f = InputForecaster("bad", (1, 2, 3), lambda x: np.ones((len(x[INPUT]), 2, 3, 4)), seq_len=2,
                        antecedent=False, batch=8)
    with pytest.raises(ValueError, match=r"bad: forecasts have shape \(2, 2, 3, 4\).*leads \[1, 2, 3\]"):
        f.forecast(block, np.array([2, 3]))
