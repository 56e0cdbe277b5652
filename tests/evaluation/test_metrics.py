"""Metrics against values computed by hand, with NaNs, masks and weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from soilcast.evaluation import metrics as m

OBS = np.array([1.0, 2.0, 3.0, 4.0])
PRED = np.array([2.0, 2.0, 2.0, 6.0])  # errors +1, 0, -1, +2


def test_error_metrics_by_hand():
    assert m.mse(OBS, PRED) == pytest.approx(6 / 4)
    assert m.rmse(OBS, PRED) == pytest.approx(math.sqrt(1.5))
    assert m.mae(OBS, PRED) == pytest.approx(4 / 4)
    assert m.bias(OBS, PRED) == pytest.approx(2 / 4)
    # ubRMSE^2 = MSE - bias^2 = 1.5 - 0.25
    assert m.ubrmse(OBS, PRED) == pytest.approx(math.sqrt(1.25))


def test_r2_pearson_nse_kge_by_hand():
    # obs mean 2.5, SST = 2.25+0.25+0.25+2.25 = 5, SSE = 6
    assert m.r2(OBS, PRED) == pytest.approx(1 - 6 / 5)
    assert m.nse(OBS, PRED) == pytest.approx(1 - 6 / 5)  # 1-D: same as r2
    # pred mean 3; cov = mean((o-2.5)(p-3)) = (1.5+0.5-0.5+4.5)/4 = 1.5
    so, sp = math.sqrt(5 / 4), math.sqrt(1 + 1 + 1 + 9) / 2
    r = 1.5 / (so * sp)
    assert m.pearson_r(OBS, PRED) == pytest.approx(r)
    assert m.pearson_r(OBS, PRED) == pytest.approx(np.corrcoef(OBS, PRED)[0, 1])
    alpha, beta = sp / so, 3 / 2.5
    assert m.kge(OBS, PRED) == pytest.approx(1 - math.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2))
    assert m.kge(OBS, OBS) == pytest.approx(1.0)


def test_nans_and_zero_weights_are_ignored():
    obs = np.array([1.0, np.nan, 2.0, 3.0, 4.0, 100.0])
    pred = np.array([2.0, 5.0, 2.0, np.nan, 6.0, 0.0])
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.0])  # last point masked out
    # valid: (1,2), (2,2), (4,6) -> errors 1, 0, 2
    assert m.mse(obs, pred, w) == pytest.approx(5 / 3)
    assert m.mae(obs, pred, w) == pytest.approx(1.0)
    assert m.bias(obs, pred, w) == pytest.approx(1.0)


def test_weights_change_the_mean():
    obs = np.zeros(2)
    pred = np.array([1.0, 3.0])
    assert m.mae(obs, pred, np.array([3.0, 1.0])) == pytest.approx((3 * 1 + 1 * 3) / 4)
    assert m.rmse(obs, pred, np.array([1.0, 1.0])) == pytest.approx(math.sqrt(5))


def test_nse_uses_each_cells_temporal_mean():
    # Two cells with very different levels; the forecast gets each level right but has no
    # temporal skill. Pooled r2 rewards the spatial contrast, NSE does not.
    obs = np.array([[0.1, 0.5], [0.3, 0.7], [0.1, 0.5], [0.3, 0.7]])  # [time, cell]
    pred = np.array([[0.2, 0.6]] * 4)
    assert m.nse(obs, pred, time_axis=0) == pytest.approx(0.0)
    assert m.r2(obs, pred) > 0.5


def test_anomaly_correlation_and_skill_scores():
    clim = np.array([2.0, 2.0, 3.0, 3.0])
    # anomalies obs: -1, 0, 0, 1 ; pred: 0, 0, -1, 3
    expected = np.corrcoef([-1, 0, 0, 1], [0, 0, -1, 3])[0, 1]
    assert m.anomaly_correlation(OBS, PRED, clim) == pytest.approx(expected)
    # MSE(pred)=1.5, MSE(clim)=(1+0+0+1)/4=0.5
    assert m.skill_score(OBS, PRED, clim) == pytest.approx(1 - 1.5 / 0.5)
    assert m.skill_score(OBS, OBS, clim) == pytest.approx(1.0)
    assert m.skill_score(OBS, clim, clim) == pytest.approx(0.0)


def test_skill_score_uses_common_points():
    ref = np.array([np.nan, 2.0, 3.0, 5.0])
    # common points 1..3: MSE pred (0+1+4)/3, MSE ref (0+0+1)/3
    assert m.skill_score(OBS, PRED, ref) == pytest.approx(1 - 5.0)


def test_empty_selection_is_nan_not_error():
    assert math.isnan(m.rmse(OBS, PRED, np.zeros(4)))
    assert math.isnan(m.pearson_r(OBS, PRED, np.zeros(4)))
    assert math.isnan(m.nse(OBS, PRED, np.zeros(4)))


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        m.rmse(OBS, PRED[:3])


def test_area_weights_and_all_metrics_on_a_grid():
    lat = np.array([0.0, 60.0])
    mask = np.array([[True, False], [True, True]])
    w = m.area_weights(lat, mask)
    np.testing.assert_allclose(w, [[1.0, 0.0], [0.5, 0.5]])
    obs = np.zeros((3, 2, 2))
    pred = np.zeros((3, 2, 2))
    pred[:, 0, 0] = 1.0
    pred[:, 0, 1] = np.nan  # outside the mask, like real forecasts
    out = m.all_metrics(obs, pred, w, clim=obs + 0.5, persistence=obs + 1.0)
    # squared errors 1 (w=1) and 0 (w=0.5, 0.5) -> MSE 1/2
    assert out["mse"] == pytest.approx(0.5)
    assert out["skill_vs_climatology"] == pytest.approx(1 - 0.5 / 0.25)
    assert out["skill_vs_persistence"] == pytest.approx(0.5)
    assert out["n"] == 9
    safe = m.finite_or_none(out)
    assert safe["r2"] is None  # obs constant -> undefined, JSON-safe
