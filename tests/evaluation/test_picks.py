"""What the figures show: the best network chosen on validation, the season spans, the
area-weighted basin mean, and one colour per network across its feeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from soilcast.evaluation.metrics import area_weights
from soilcast.evaluation.picks import (
    basin_mean,
    best_network,
    end_leads,
    line_styles,
    longest_run,
    period_of,
    season_spans,
)
from soilcast.records import Leaderboard


def entry(kind: str, test_mse: float, val_mse: float | None, feed: str = "past") -> dict:
    by_lead = {k: {"mse": test_mse} for k in ("1", "2")}
    return {"status": "ok", "kind": kind, "feed": feed, "n_windows": 10, "leads": [1, 2],
            "init_period": ["2013-01-01", "2013-12-31"], "overall": by_lead, "seasons": {}, "basins": {},
            "val": None if val_mse is None else {k: {"mse": val_mse} for k in ("1", "2")}}


def test_the_best_network_is_chosen_on_validation_not_test():
    board = Leaderboard.from_json({
        "test_best": entry("network", 1e-4, 5e-4),  # best on test, worse on validation
        "val_best": entry("network", 3e-4, 2e-4),
        "no_val": entry("network", 1e-5, None),  # never a candidate without validation scores
        "persistence": entry("reference", 1e-6, 1e-6),  # references are not networks
        "gru": {"status": "skipped", "reason": "not trained"},
    }, "test")
    assert best_network(board) == "val_best"
    assert best_network(board, ["test_best", "no_val"]) == "test_best"
    assert best_network(board, ["no_val", "persistence"]) is None
    assert period_of(board) == "test inits 2013-01-01–2013-12-31"


def test_a_network_fed_perfect_weather_is_never_the_best_shown():
    board = Leaderboard.from_json({
        "fc+perfect": entry("network", 1e-5, 1e-5, feed="perfect"),  # the upper bound: best, never served
        "fc+forecast": entry("network", 2e-4, 2e-4, feed="forecast"),
        "fc": entry("network", 3e-4, 3e-4),
    }, "test")
    assert best_network(board) == "fc+forecast"


def test_a_validation_mse_missing_at_one_lead_disqualifies():
    e = entry("network", 1e-4, 1e-5)
    e["val"]["2"] = {"mse": None}
    board = Leaderboard.from_json({"gap": e, "whole": entry("network", 1e-4, 1e-3)}, "test")
    assert best_network(board) == "whole"


def test_feeds_of_a_network_share_its_colour_and_differ_by_line_and_hatch():
    board = Leaderboard.from_json({"cnn": entry("network", 1, 1), "cnn+forecast": entry("network", 1, 1, "forecast"),
                                   "lstm": entry("network", 1, 1), "climatology": entry("reference", 1, 1)}, "test")
    st = line_styles(board)
    assert st["cnn"]["color"] == st["cnn+forecast"]["color"] != st["lstm"]["color"]
    assert st["cnn"]["fmt"] != st["cnn+forecast"]["fmt"] and st["cnn"]["hatch"] != st["cnn+forecast"]["hatch"]
    assert st["climatology"]["fmt"] == "s--"


def test_end_leads_are_the_first_and_last_index():
    assert end_leads((1, 2, 3, 7)) == [0, 3] and end_leads((1,)) == [0] and end_leads(()) == []


def test_longest_run_of_consecutive_days_earliest_on_ties():
    time = pd.DatetimeIndex(["2013-06-01", "2013-06-02", "2013-06-04", "2013-06-05", "2013-06-06", "2013-06-08",
                             "2013-06-09", "2013-06-10"])
    assert longest_run(np.ones(8, bool), time).tolist() == [2, 3, 4]
    assert longest_run(np.array([1, 1, 0, 0, 0, 0, 0, 0], bool), time).tolist() == [0, 1]
    assert longest_run(np.zeros(8, bool), time).size == 0


def test_season_spans_are_one_wet_and_one_dry_stretch():
    from soilcast.config import load_config
    from tests.conftest import PARAMS

    ev = load_config(PARAMS).evaluation
    time = pd.date_range("2012-11-01", "2013-12-31", freq="D")
    spans = season_spans(time, ev)
    assert list(spans) == [ev.wet_season, ev.dry_season]
    for season, rows in spans.items():
        months = set(time[rows].month)
        assert months == set(ev.seasons[season]) and (np.diff(rows) == 1).all()


def test_basin_mean_is_the_cos_latitude_weighted_mean_of_the_finite_cells():
    lat = np.array([0.0, 60.0])
    mask = np.array([[True, True], [True, False]])
    w = area_weights(lat, mask)
    values = np.array([[[1.0, 3.0], [5.0, 9.0]], [[2.0, np.nan], [4.0, 9.0]], [[np.nan] * 2] * 2])
    got = basin_mean(values, w, np.ones((2, 2), bool))
    # day 0: cells (0,0), (0,1) weight 1, (1,0) weight 0.5; (1,1) outside the mask
    assert got[0] == pytest.approx((1 + 3 + 0.5 * 5) / 2.5)
    assert got[1] == pytest.approx((2 + 0.5 * 4) / 1.5)  # the NaN cell leaves the mean
    assert np.isnan(got[2])
    west = basin_mean(values, w, np.array([[True, False], [True, False]]))
    assert west[0] == pytest.approx((1 + 0.5 * 5) / 1.5)
