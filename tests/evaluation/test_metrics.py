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


def test_metric_registry_names_are_unique_and_match():
    assert all(name == metric.name for name, metric in m.METRICS.items())
    with pytest.raises(ValueError, match="'rmse' is registered twice"):
        m.registry(m.METRICS["rmse"], m.METRICS["mae"], m.METRICS["rmse"])


def test_every_metric_points_the_way_it_says():
    """A forecast closer to the observations scores better in each metric's own direction."""
    rng = np.random.default_rng(3)
    obs = rng.normal(0.3, 0.05, (60, 4, 4)) + np.sin(np.arange(60) / 9)[:, None, None] * 0.05
    good, bad = obs + rng.normal(0.0, 0.005, obs.shape) + 0.001, obs + rng.normal(0.0, 0.05, obs.shape) + 0.02
    context = {"clim": np.full(obs.shape, obs.mean()), "persistence": np.roll(obs, 1, axis=0)}
    for metric in m.METRICS.values():
        g, b = (metric.compute(obs, f, None, **context) for f in (good, bad))
        if metric.lower_is_better is None:  # signed (bias): best at zero
            assert abs(g) < abs(b), metric.name
        else:
            assert (g < b) == metric.lower_is_better, (metric.name, g, b)


def test_all_metrics_and_the_leaderboard_cover_the_registry():
    """The leaderboard's per-lead table has one column per ``leaderboard=True`` metric of the
    registry, in registry order, and one row per model and lead showing that lead's values."""
    from soilcast.evaluation.evaluate import leaderboard
    from soilcast.records import Leaderboard

    obs = np.arange(12.0).reshape(3, 2, 2)
    out = m.all_metrics(obs, obs + 0.5, None, clim=obs * 0 + 5.0, persistence=obs + 1.0)
    assert set(out) == set(m.METRICS) | {"n"}
    assert set(m.all_metrics(obs, obs + 0.5)) == {n for n, x in m.METRICS.items() if not x.needs} | {"n"}
    lead2 = m.finite_or_none(m.all_metrics(obs, obs + 1.5, None, clim=obs * 0 + 5.0, persistence=obs + 1.0))
    by_lead = {"1": m.finite_or_none(out), "2": lead2}
    entry = {"status": "ok", "kind": "network", "n_windows": 3, "leads": [1, 2],
             "init_period": ["2013-01-01", "2013-01-03"], "overall": by_lead, "seasons": {}, "basins": {},
             "val": by_lead}
    board = leaderboard(Leaderboard.model_validate({"x": entry}), "rmse")
    lines = board.splitlines()
    header = next(line for line in lines if line.startswith("| model | lead |"))
    cells = [c.strip() for c in header.split("|")[1:-1]]
    assert cells[:3] == ["model", "lead", "val rmse"]
    columns = [n for n, x in m.METRICS.items() if x.leaderboard]
    assert cells[3:] == columns and columns  # every leaderboard metric, nothing else
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[4:-1]]
            for line in lines if line.startswith("| x | ")}
    assert set(rows) == {"1", "2"}  # one row per lead
    for lead, values in rows.items():
        assert values == ["n/a" if by_lead[lead][c] is None else f"{by_lead[lead][c]:.4f}" for c in columns]


def test_gate_ranks_only_by_a_registered_error_metric():
    from soilcast.config import ConfigError, load_config
    from tests.conftest import PARAMS

    errors = [n for n, x in m.METRICS.items() if x.lower_is_better is True and not x.needs]
    assert errors == ["rmse", "mse", "mae", "ubrmse"]
    for name in errors:
        assert load_config(PARAMS, {"gate": {"primary_metric": name}}).gate.primary_metric == name
    for name, why in (("kge", "cannot rank candidates"), ("skill_vs_persistence", "cannot rank candidates"),
                      ("bias", "cannot rank candidates"), ("rsme", "not a registered metric")):
        with pytest.raises(ConfigError) as err:
            load_config(PARAMS, {"gate": {"primary_metric": name}})
        assert f"gate.primary_metric: {why}" in str(err.value) and "rmse, mse, mae, ubrmse" in str(err.value)


def test_report_subsets_name_registered_metrics():
    """The hindcast table and the model card show chosen subsets: each must be a metric."""
    from soilcast.export.card import _ROWS
    from soilcast.serving.hindcast import COLUMNS

    assert set(_ROWS) <= set(m.METRICS) and set(COLUMNS) <= set(m.METRICS)
