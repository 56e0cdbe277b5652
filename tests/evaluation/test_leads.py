"""The lead axis of scores: lead keys, the best reference at each lead (chosen on
validation), skill against it and the mean over leads."""

from __future__ import annotations

import math

import pytest

from soilcast.evaluation.leads import best_references, lead_key, mean_over_leads, skill_against, skill_vs_best
from soilcast.records import Leaderboard


def _entry(kind: str, val_mse: list[float | None], test_mse: list[float | None] | None = None) -> dict:
    test_mse = val_mse if test_mse is None else test_mse
    return {"status": "ok", "kind": kind, "n_windows": 5, "leads": [1, 4], "init_period": ["2013-01-07", "2013-12-27"],
            "overall": {lead_key(k): {"mse": v} for k, v in zip((1, 4), test_mse)}, "seasons": {}, "basins": {},
            "val": {lead_key(k): {"mse": v} for k, v in zip((1, 4), val_mse)}}


def board(**extra: dict) -> Leaderboard:
    return Leaderboard.from_json({
        "persistence": _entry("reference", [1.0, 8.0], test_mse=[1.0, 9.0]),
        "climatology": _entry("reference", [10.0, 10.0]),
        "damped_persistence": _entry("reference", [1.2, 5.0], test_mse=[1.2, 4.0]),
        "linear": _entry("reference", [0.5, 0.5]),  # the best, but no benchmark
        "fc": _entry("network", [0.5, 4.0], test_mse=[0.8, 2.0]),
        "lstm": {"status": "skipped", "reason": "not trained"},
        **extra,
    })


BENCH = ("persistence", "climatology", "damped_persistence")


def test_lead_keys_are_the_days_as_strings():
    assert lead_key(1) == "1" and lead_key(7) == "7"


def test_best_reference_is_the_lowest_validation_mse_among_the_benchmarks():
    b = board()
    assert b.leads() == [1, 4]
    assert best_references(b, BENCH) == {"1": "persistence", "4": "damped_persistence"}
    # only the given benchmarks compete, and a benchmark that was not scored is left out
    assert best_references(b, ("climatology", "absent")) == {"1": "climatology", "4": "climatology"}
    # a tie goes to the first name in order
    tie = board(persistence=_entry("reference", [1.2, 8.0]))
    assert best_references(tie, BENCH)["1"] == "damped_persistence"
    # a lead where no benchmark has a finite MSE has no best reference
    assert best_references(board(persistence=_entry("reference", [None, 8.0]),
                                 climatology=_entry("reference", [None, 10.0]),
                                 damped_persistence=_entry("reference", [None, 5.0])), BENCH) == {"4": "damped_persistence"}


def test_skill_against_the_best_reference_per_lead_on_validation_and_test():
    b = board()
    best = best_references(b, BENCH)
    assert skill_vs_best(b, "fc", best, "val") == pytest.approx({"1": 1 - 0.5 / 1.0, "4": 1 - 4.0 / 5.0})
    # the test years use the same references (chosen on validation), with their test MSEs
    assert skill_vs_best(b, "fc", best, "test") == pytest.approx({"1": 1 - 0.8 / 1.0, "4": 1 - 2.0 / 4.0})
    assert skill_vs_best(b, "damped_persistence", best, "val")["4"] == pytest.approx(0.0)
    assert skill_vs_best(b, "lstm", best, "val") == {"1": None, "4": None}  # skipped: no score


def test_skill_against_is_none_where_undefined():
    out = skill_against({"1": {"mse": 1.0}, "2": {"mse": 1.0}, "3": {"mse": None}, "4": {"mse": 2.0}},
                        {"1": {"mse": 4.0}, "2": {"mse": 0.0}, "3": {"mse": 1.0}})
    assert out == {"1": pytest.approx(0.75), "2": None, "3": None, "4": None}


def test_mean_over_leads_needs_every_lead():
    assert mean_over_leads({"1": 0.5, "4": 0.2}) == pytest.approx(0.35)
    assert mean_over_leads({"1": 0.5, "4": None}) is None
    assert mean_over_leads({"1": 0.5, "4": math.nan}) is None
    assert mean_over_leads({}) is None
