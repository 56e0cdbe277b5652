"""Probabilistic scores against hand-computed values, scoringrules' conventions, and
calibrated synthetic forecasts; with NaNs, zero weights and empty inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from soilcast.evaluation import metrics
from soilcast.evaluation import probabilistic as p

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
Z = norm.ppf(LEVELS)


def _gaussian(n: int, width: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Observations ~ N(mu_i, 1) and the quantiles of N(mu_i, width^2) at LEVELS."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0.0, 3.0, n)
    obs = mu + rng.normal(0.0, 1.0, n)
    return obs, mu[:, None] + width * Z[None, :]


def test_crps_of_a_point_forecast_is_its_mae():
    obs = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    pred = np.array([2.0, 2.0, 2.5, 6.0, 1.0])
    w = np.array([1.0, 2.0, 0.5, 1.0, 1.0])
    assert p.crps(obs, pred[:, None], (0.5,)) == pytest.approx(metrics.mae(obs, pred))
    assert p.crps(obs, pred[:, None], (0.5,), w) == pytest.approx(metrics.mae(obs, pred, w))
    scores = p.probabilistic_scores(obs, pred, None, None, w, np.full(5, 2.0))
    assert set(scores) == {"crps", "brier_d1"}  # a point forecast has no interval to score
    assert scores["crps"] == pytest.approx(metrics.mae(obs, pred, w))


def test_crps_of_quantiles_is_twice_the_mean_pinball_loss_by_hand():
    """scoringrules' crps_quantile = 2/Q * sum_j pinball_tau_j. q = (1, 2, 4) at (.25, .5, .75):
    obs 3: .25*(3-1) + .5*(3-2) + (1-.75)*(4-3) = 1.25 -> 2/3 * 1.25 = 5/6;
    obs 0: (1-.25)*1 + (1-.5)*2 + (1-.75)*4 = 2.75 -> 2/3 * 2.75 = 11/6."""
    q = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    levels = (0.25, 0.5, 0.75)
    obs = np.array([3.0, 0.0])
    assert p.crps(obs, q, levels) == pytest.approx((5 / 6 + 11 / 6) / 2)
    assert p.crps(obs, q, levels, weights=np.array([3.0, 1.0])) == pytest.approx((3 * 5 / 6 + 11 / 6) / 4)


def test_crps_rewards_a_calibrated_fan_over_a_wrong_width():
    obs, q = _gaussian(5000)
    _, narrow = _gaussian(5000, width=0.3)
    _, wide = _gaussian(5000, width=3.0)
    good = p.crps(obs, q, LEVELS)
    assert good < p.crps(obs, narrow, LEVELS) and good < p.crps(obs, wide, LEVELS)
    # with many evenly spaced levels the pinball average tends to the CRPS itself: for
    # N(mu, 1) forecasts of N(mu, 1) outcomes its mean is 1/sqrt(pi)
    dense = np.arange(1, 100) / 100
    rng = np.random.default_rng(1)
    mu = rng.normal(0.0, 3.0, 20000)
    y = mu + rng.normal(0.0, 1.0, mu.size)
    assert p.crps(y, mu[:, None] + norm.ppf(dense)[None], dense) == pytest.approx(1 / math.sqrt(math.pi), rel=0.03)


def test_coverage_by_hand_with_inclusive_bounds():
    q = np.array([-3, -2, -1, 0, 1, 2, 3], float)[None].repeat(6, axis=0)
    obs = np.array([0.0, 1.0, 1.5, 2.5, 3.0, -4.0])  # 1.0 and 3.0 sit on a bound: inside
    assert p.coverage(obs, q, LEVELS, 0.5) == pytest.approx(2 / 6)
    assert p.coverage(obs, q, LEVELS, 0.8) == pytest.approx(3 / 6)
    assert p.coverage(obs, q, LEVELS, 0.9) == pytest.approx(5 / 6)
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 5.0])  # the outlier counts five times
    assert p.coverage(obs, q, LEVELS, 0.9, w) == pytest.approx(5 / 10)
    assert math.isnan(p.coverage(obs, q[:, [1, 3, 5]], (0.1, 0.5, 0.9), 0.5))  # no 25/75 % levels


def test_event_probability_reads_the_piecewise_linear_cdf():
    q = np.array([[1.0, 2.0, 4.0]] * 4)
    # knots (0, 0), (1, .25), (2, .5), (4, .75), (6, 1): tails as wide as their neighbour
    prob = p.event_probability(q, (0.25, 0.5, 0.75), np.array([3.0, 0.5, -1.0, 7.0]))
    np.testing.assert_allclose(prob, [0.625, 0.125, 0.0, 1.0])
    assert np.isnan(p.event_probability(np.array([[1.0, np.nan, 4.0]]), (0.25, 0.5, 0.75), 3.0)).all()


def test_brier_by_hand():
    obs = np.array([1.0, 1.0, 3.0, np.nan])
    prob = np.array([0.2, 0.9, 0.5, 0.5])
    # events (obs <= 2): 1, 1, 0 -> (0.8^2 + 0.1^2 + 0.5^2) / 3; the NaN day is left out
    assert p.brier(obs, prob, 2.0) == pytest.approx((0.64 + 0.01 + 0.25) / 3)
    assert p.brier(obs, prob, np.array([2.0, 2.0, 2.0, 2.0]), np.array([1.0, 0.0, 1.0, 1.0])) == pytest.approx(
        (0.64 + 0.25) / 2)
    assert p.brier(obs, prob, 2.0) == pytest.approx(p.brier(obs[:3], prob[:3], np.full(3, 2.0)))


def test_pit_of_a_calibrated_forecast_is_flat_and_of_an_overconfident_one_u_shaped():
    obs, q = _gaussian(40000)
    hist = p.pit_histogram(obs, q, LEVELS)
    assert len(hist) == p.DEFAULT_BINS and sum(hist) == pytest.approx(1.0)
    np.testing.assert_allclose(hist, 0.1, atol=0.015)
    _, narrow = _gaussian(40000, width=0.4)
    u = p.pit_histogram(obs, narrow, LEVELS)
    assert u[0] > 0.2 and u[-1] > 0.2 and u[5] < 0.1
    w = np.where(obs > np.median(obs), 1.0, 0.0)  # weights count: half the points only
    assert sum(p.pit_histogram(obs, q, LEVELS, w, bins=5)) == pytest.approx(1.0)


def test_spread_error_ratio_of_calibrated_and_half_width_fans():
    obs, q = _gaussian(40000)
    assert p.spread_error_ratio(obs, q, LEVELS) == pytest.approx(1.0, abs=0.03)
    _, half = _gaussian(40000, width=0.5)
    assert p.spread_error_ratio(obs, half, LEVELS) == pytest.approx(0.5, abs=0.02)
    # the widest central interval forecast sets the spread: with 10/90 % only the same holds
    three = [1, 3, 5]
    assert p.spread_error_ratio(obs, q[:, three], (0.1, 0.5, 0.9)) == pytest.approx(1.0, abs=0.03)
    assert math.isnan(p.spread_error_ratio(obs, q[:, [2, 3]], (0.25, 0.5)))  # no central interval


def test_reliability_by_hand():
    prob = np.array([0.05, 0.15, 0.12, 0.95, np.nan])
    event = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    r = p.reliability(prob, event)
    assert r["count"] == [1.0, 2.0, 0, 0, 0, 0, 0, 0, 0, 1.0]
    assert r["forecast"][0] == pytest.approx(0.05) and r["forecast"][1] == pytest.approx(0.135)
    assert r["observed"][:2] == [0.0, 0.5] and r["observed"][9] == 1.0
    assert r["forecast"][2] is None and r["observed"][5] is None
    assert p.reliability(np.array([1.0]), np.array([1.0]))["count"][-1] == 1.0  # p = 1 is the last bin


def test_probabilistic_scores_keys_and_nan_handling():
    obs, q = _gaussian(2000)
    t = np.full(obs.shape, -1.0)
    med = q[:, 3]
    scores = p.probabilistic_scores(obs, med, q, LEVELS, None, t)
    assert tuple(scores) == p.PROBABILISTIC_KEYS
    assert scores["coverage_90"] == pytest.approx(0.9, abs=0.03)
    assert scores["coverage_50"] == pytest.approx(0.5, abs=0.03)
    assert 0 < scores["brier_d1"] < 0.25
    # NaN observations, NaN quantile rows and zero weights drop out, nothing else changes
    obs2 = np.concatenate([obs, [np.nan, 1.0, 1.0]])
    q2 = np.concatenate([q, q[:3]])
    q2[-2, 4] = np.nan
    w2 = np.concatenate([np.ones_like(obs), [1.0, 1.0, 0.0]])
    t2 = np.concatenate([t, [-1.0] * 3])
    again = p.probabilistic_scores(obs2, q2[:, 3], q2, LEVELS, w2, t2)
    for key in scores:
        assert again[key] == pytest.approx(scores[key]), key
    # only the intervals forecast are reported
    three = p.probabilistic_scores(obs, med, q[:, [1, 3, 5]], (0.1, 0.5, 0.9), None, t)
    assert set(three) == {"crps", "brier_d1", "coverage_80", "spread_error_ratio"}
    # no valid point: NaN everywhere, never an exception
    empty = p.probabilistic_scores(np.full(3, np.nan), np.zeros(3), np.zeros((3, 7)), LEVELS, None, np.zeros(3))
    assert set(empty) == set(p.PROBABILISTIC_KEYS) and all(math.isnan(v) for v in empty.values())
    none = p.probabilistic_scores(np.zeros(0), np.zeros(0), None, None, None, np.zeros(0))
    assert all(math.isnan(v) for v in none.values())


def test_calibration_block():
    obs, q = _gaussian(20000)
    t = np.zeros(obs.shape)
    cal = p.calibration(obs, q, LEVELS, None, t)
    assert sum(cal["pit"]) == pytest.approx(1.0) and len(cal["pit"]) == p.DEFAULT_BINS
    rel = cal["reliability"]
    assert sum(rel["count"]) == pytest.approx(len(obs))
    for f, o in zip(rel["forecast"], rel["observed"]):  # calibrated: on the diagonal
        if f is not None:
            assert o == pytest.approx(f, abs=0.06)
    assert all(math.isnan(v) for v in p.calibration(np.full(2, np.nan), q[:2], LEVELS, None, t[:2])["pit"])


def test_skill():
    assert p.skill(0.5, 1.0) == pytest.approx(0.5)
    assert p.skill(2.0, 1.0) == pytest.approx(-1.0)
    assert p.skill(None, 1.0) is None and p.skill(1.0, None) is None
    assert p.skill(float("nan"), 1.0) is None and p.skill(1.0, 0.0) is None and p.skill(1.0, -1.0) is None
