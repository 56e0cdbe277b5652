"""Promotion gate by lead: on the validation years the winner must beat the best benchmark
reference (persistence, climatology, damped persistence) at EVERY lead; change threshold vs
the served champion at the leads both forecast."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soilcast.config import Config, save_config
from soilcast.evaluation.gate import decide, pick_winner
from soilcast.evaluation.leads import best_references
from soilcast.ml.models.references import benchmark_names
from soilcast.records import Leaderboard
from soilcast.testing.stages import blessing_path, metrics_path, run_gate

LEADS = [1, 2, 3]
KEYS = [str(k) for k in LEADS]
# validation (and test) RMSE of the references per lead: persistence is the one to beat at
# lead 1, damped persistence at leads 2 and 3, climatology nowhere
REF_RMSE = {"persistence": (0.010, 0.020, 0.030), "climatology": (0.040, 0.040, 0.040),
            "damped_persistence": (0.011, 0.018, 0.025)}
BEST = {"1": "persistence", "2": "damped_persistence", "3": "damped_persistence"}
BEST_RMSE = (0.010, 0.018, 0.025)


def _blocks(rmse: tuple[float, ...]) -> dict:
    return {k: {"mse": r * r, "rmse": r, "mae": r, "ubrmse": r,
                "skill_vs_climatology": 1 - r * r / REF_RMSE["climatology"][i] ** 2,
                "skill_vs_persistence": 1 - r * r / REF_RMSE["persistence"][i] ** 2}
            for i, (k, r) in enumerate(zip(KEYS, rmse))}


def _ref(name: str) -> dict:
    return {"status": "ok", "kind": "reference", "n_windows": 10, "leads": LEADS,
            "init_period": ["2013-01-07", "2013-12-28"], "overall": _blocks(REF_RMSE[name]), "seasons": {},
            "basins": {}, "val": _blocks(REF_RMSE[name])}


def _entry(*skill: float, kind: str = "network") -> dict:
    """A model whose validation (and test) MSE skill against the best reference at lead k is
    ``skill[k]`` (one value: the same at every lead)."""
    skill = skill * len(LEADS) if len(skill) == 1 else skill
    rmse = tuple(b * math.sqrt(1 - s) for b, s in zip(BEST_RMSE, skill))
    return {**_ref("persistence"), "kind": kind, "overall": _blocks(rmse), "val": _blocks(rmse)}


def val_rmse(entry: dict) -> dict[str, float]:
    return {k: b["rmse"] for k, b in entry["val"].items()}


def write_metrics(cfg: Config, **models: dict) -> dict:
    metrics = {
        **{name: _ref(name) for name in REF_RMSE},  # references never win, however good
        "gru": {"status": "skipped", "reason": "not trained"},
        **models,
    }
    path = metrics_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return metrics


def add_champion(cfg: Config, version: int = 1, model: str = "lstm", variables: list[str] | None = None) -> Path:
    d = cfg.paths.models_dir / str(version) / "assets.extra"
    d.mkdir(parents=True)
    names = cfg.variable_names if variables is None else variables
    (d / "soilcast_metadata.json").write_text(json.dumps({"model": model, "version": version, "variables": names}))
    return d.parent


def fixed_scorer(rmse: dict[str, float]):
    """The champion re-scored: ``{lead key: rmse}`` (the leads it forecasts)."""
    return lambda cfg, version_dir: {k: {"rmse": r, "mae": r, "ubrmse": r} for k, r in rmse.items()}


def scaled(rmse: dict[str, float], factor: float) -> dict[str, float]:
    return {k: r * factor for k, r in rmse.items()}


def test_best_reference_per_lead_is_chosen_on_validation(tiny_cfg):
    metrics = write_metrics(tiny_cfg)
    board = Leaderboard.from_json(metrics)
    assert best_references(board, benchmark_names()) == BEST
    # test scores never choose it: a persistence perfect on the test years changes nothing
    metrics["persistence"]["overall"] = _blocks((0.001, 0.001, 0.001))
    assert best_references(Leaderboard.from_json(metrics), benchmark_names()) == BEST


def test_winner_is_the_best_trained_network(tiny_cfg):
    metrics = write_metrics(tiny_cfg, convlstm=_entry(0.3), lstm=_entry(0.5, 0.4, 0.3), fc=_entry(-0.1))
    winner, scores = pick_winner(Leaderboard.from_json(metrics), BEST)
    assert winner == "lstm"
    assert set(scores) == {"convlstm", "lstm", "fc"}  # not references, not skipped
    assert scores["lstm"] == pytest.approx(0.4) and scores["convlstm"] == pytest.approx(0.3)  # mean over leads


def test_without_champion_passes_a_better_model(tiny_cfg):
    write_metrics(tiny_cfg, convlstm=_entry(0.3, 0.2, 0.25))
    d = run_gate(tiny_cfg)
    assert d.blessed and d.winner == "convlstm" and d.champion is None
    assert d.leads == LEADS and d.best_reference == BEST and d.weakest_lead == 2
    saved = json.loads(blessing_path(tiny_cfg).read_text())
    assert saved["blessed"] is True and saved["weakest_lead"] == 2
    assert saved["skill_vs_best_reference"] == pytest.approx({"1": 0.3, "2": 0.2, "3": 0.25})
    assert saved["test_skill_vs_best_reference"] == pytest.approx({"1": 0.3, "2": 0.2, "3": 0.25})
    assert saved["winner_score"] == pytest.approx(0.25)
    assert any("weakest lead 2 day(s)" in r and "(damped_persistence) >= required 0.0" in r for r in d.reasons)


def test_without_champion_blocks_a_model_worse_than_the_best_reference(tiny_cfg):
    write_metrics(tiny_cfg, convlstm=_entry(-0.08))
    d = run_gate(tiny_cfg)
    assert not d.blessed
    assert any("below required" in r for r in d.reasons)


def test_a_model_that_loses_at_one_lead_is_refused_naming_that_lead(tiny_cfg):
    """Good on average (and at every other lead), worse than damped persistence at lead 2:
    the mean over leads does not rescue it, and the reasons say which lead failed."""
    write_metrics(tiny_cfg, convlstm=_entry(0.5, -0.05, 0.4))
    d = run_gate(tiny_cfg)
    assert d.winner == "convlstm" and d.winner_score == pytest.approx(0.85 / 3)
    assert not d.blessed and d.weakest_lead == 2
    assert d.skill_vs_best_reference["2"] == pytest.approx(-0.05)
    (reason,) = [r for r in d.reasons if "below required" in r]
    assert "lead 2 day(s)" in reason and "damped_persistence" in reason
    assert not any("lead 1 day" in r or "lead 3 day" in r for r in d.reasons if "below required" in r)
    assert json.loads(blessing_path(tiny_cfg).read_text())["weakest_lead"] == 2
    # two failing leads: both named, the weakest first
    write_metrics(tiny_cfg, convlstm=_entry(-0.02, 0.3, -0.2))
    d = run_gate(tiny_cfg)
    failing = [r for r in d.reasons if "below required" in r]
    assert not d.blessed and d.weakest_lead == 3 and len(failing) == 2
    assert "weakest lead 3 day(s)" in failing[0] and "lead 1 day(s)" in failing[1] and "persistence" in failing[1]


def test_the_threshold_applies_at_every_lead(tiny_cfg):
    write_metrics(tiny_cfg, convlstm=_entry(0.3, 0.12, 0.3))
    d = decide(Leaderboard.read(metrics_path(tiny_cfg)), "rmse", 0.1, 0.02, None, benchmark_names())
    assert d.blessed and d.thresholds["min_skill_vs_best_reference"] == 0.1
    d = decide(Leaderboard.read(metrics_path(tiny_cfg)), "rmse", 0.15, 0.02, None, benchmark_names())
    assert not d.blessed and d.weakest_lead == 2


def test_champion_blocks_a_regression_beyond_tolerance(tiny_cfg):
    add_champion(tiny_cfg)
    mine = val_rmse(write_metrics(tiny_cfg, convlstm=_entry(0.2))["convlstm"])
    # the candidate is 8 % worse than the champion at every lead > max_regression 2 %
    d = run_gate(tiny_cfg, scorer=fixed_scorer(scaled(mine, 1 / 1.08)))
    assert not d.blessed
    assert d.champion["model"] == "lstm" and d.champion_score == pytest.approx(sum(mine.values()) / 3 / 1.08)
    assert d.champion["by_lead"]["2"]["rmse"] == pytest.approx(mine["2"] / 1.08)
    assert any("exceeds champion" in r for r in d.reasons)


def test_champion_passes_better_or_within_tolerance(tiny_cfg):
    add_champion(tiny_cfg)
    mine = val_rmse(write_metrics(tiny_cfg, convlstm=_entry(0.2))["convlstm"])
    assert run_gate(tiny_cfg, scorer=fixed_scorer(scaled(mine, 1 / 1.01))).blessed  # 1 % worse: within 2 %
    d = run_gate(tiny_cfg, scorer=fixed_scorer(scaled(mine, 1.25)))  # better
    assert d.blessed and d.relative_change == pytest.approx(-0.2)


def test_champion_is_compared_at_the_leads_it_forecasts(tiny_cfg):
    """A champion exported before the lead axis forecasts lead 1 only: the change check
    compares lead 1 with lead 1, not the candidate's mean over leads with it."""
    add_champion(tiny_cfg)
    mine = val_rmse(write_metrics(tiny_cfg, convlstm=_entry(0.2))["convlstm"])
    # at lead 1 the candidate is 1 % better; the later leads (larger errors) do not count
    d = run_gate(tiny_cfg, scorer=fixed_scorer({"1": mine["1"] * 1.01}))
    assert d.blessed and d.champion_score == pytest.approx(mine["1"] * 1.01)
    assert d.relative_change == pytest.approx(1 / 1.01 - 1)
    assert any("mean over leads 1)" in r and "within champion" in r for r in d.reasons)
    # a champion that forecasts none of the candidate's leads cannot be compared: fail closed
    d = run_gate(tiny_cfg, scorer=fixed_scorer({"10": 0.01}))
    assert not d.blessed and any("forecasts none of the leads" in r for r in d.reasons)


def test_champion_cannot_rescue_a_model_below_the_best_reference(tiny_cfg):
    add_champion(tiny_cfg)
    mine = val_rmse(write_metrics(tiny_cfg, convlstm=_entry(0.3, 0.3, -0.01))["convlstm"])
    assert not run_gate(tiny_cfg, scorer=fixed_scorer(scaled(mine, 2.0))).blessed


def test_unscorable_champion_fails_closed(tiny_cfg):
    add_champion(tiny_cfg)
    write_metrics(tiny_cfg, convlstm=_entry(0.3))

    def broken(cfg, version_dir):
        raise ValueError("grid mismatch")

    d = run_gate(tiny_cfg, scorer=broken)
    assert not d.blessed and "grid mismatch" in d.champion["error"]


def test_champion_on_other_inputs_is_not_compared(tiny_cfg):
    """Other inputs: no re-scoring (it would fail late in TF); the thresholds alone decide."""
    add_champion(tiny_cfg, variables=tiny_cfg.variable_names[:-1])

    def must_not_run(cfg, version_dir):
        raise AssertionError("a champion on other inputs must not be re-scored")

    write_metrics(tiny_cfg, convlstm=_entry(0.3))
    d = run_gate(tiny_cfg, scorer=must_not_run)
    assert d.blessed and "error" not in d.champion and "champion_score" not in d.to_json()
    why = d.champion["incomparable"]
    assert "trained on other inputs" in why
    assert str(tiny_cfg.variable_names[:-1]) in why and str(tiny_cfg.variable_names) in why
    assert any("cannot be compared" in r and "thresholds alone decide" in r for r in d.reasons)
    saved = json.loads(blessing_path(tiny_cfg).read_text())
    assert saved["champion"]["incomparable"] == why
    write_metrics(tiny_cfg, convlstm=_entry(0.3, -0.08, 0.3))  # ... and they still bind, at every lead
    assert not run_gate(tiny_cfg, scorer=must_not_run).blessed


def test_champion_without_a_variable_list_fails_closed(tiny_cfg):
    d = add_champion(tiny_cfg) / "assets.extra" / "soilcast_metadata.json"
    d.write_text(json.dumps({"model": "lstm", "version": 1}))
    write_metrics(tiny_cfg, convlstm=_entry(0.3))
    decision = run_gate(tiny_cfg, scorer=fixed_scorer({"1": 0.05}))
    assert not decision.blessed and "no 'variables'" in decision.champion["error"]


def test_no_trained_network_is_not_blessed():
    metrics = {"climatology": _ref("climatology"), "fc": {"status": "skipped", "reason": "not trained"}}
    d = decide(Leaderboard.from_json(metrics), "rmse", 0.0, 0.02, None, benchmark_names())
    assert d.blessed is False and d.winner is None


def test_a_network_missing_a_lead_cannot_win():
    """A mean over leads needs every lead: a network with a lead unscored is no candidate."""
    metrics = {name: _ref(name) for name in REF_RMSE}
    metrics["fc"] = _entry(0.3)
    metrics["fc"]["val"]["2"]["rmse"] = metrics["fc"]["val"]["2"]["mse"] = None
    d = decide(Leaderboard.from_json(metrics), "rmse", 0.0, 0.02, None, benchmark_names())
    assert d.winner is None and d.candidates == {} and d.blessed is False


def test_cli_exit_codes(tiny_cfg, tmp_path):
    from soilcast.cli import app

    params = tmp_path / "params.yaml"
    save_config(tiny_cfg, params)
    runner = CliRunner()
    write_metrics(tiny_cfg, convlstm=_entry(0.3, -0.08, 0.3))
    res = runner.invoke(app, ["gate", "-p", str(params)])
    assert res.exit_code == 3, res.output
    res = runner.invoke(app, ["gate", "-p", str(params), "--no-fail"])
    assert res.exit_code == 0 and "NOT blessed" in res.output
    write_metrics(tiny_cfg, convlstm=_entry(0.3))
    res = runner.invoke(app, ["gate", "-p", str(params)])
    assert res.exit_code == 0 and "BLESSED" in res.output


def test_perfect_weather_never_wins_and_a_forecast_fed_winner_names_its_network(tiny_cfg):
    """Perfect weather is an upper bound no forecast reaches: it never competes. A network
    that wins with the forecast archive's runs is exported as that network, fed a forecast."""
    metrics = write_metrics(tiny_cfg, convlstm=_entry(0.2), **{"convlstm+forecast": {**_entry(0.3), "feed": "forecast"},
                                                               "convlstm+perfect": {**_entry(0.9), "feed": "perfect"}})
    board = Leaderboard.from_json(metrics)
    winner, scores = pick_winner(board, BEST)
    assert winner == "convlstm+forecast" and "convlstm+perfect" not in scores
    d = decide(board, "rmse", 0.0, 0.02, None, benchmark_names())
    assert d.blessed and d.network == "convlstm" and d.served_feed == "forecast"
    # without the forecast the network earns less; with perfect weather alone nothing competes
    only_perfect = write_metrics(tiny_cfg, **{"convlstm+perfect": {**_entry(0.9), "feed": "perfect"}})
    assert pick_winner(Leaderboard.from_json(only_perfect), BEST)[0] is None


# --------------------------------------------------------------------------- calibration

PROB_REFS = ("clim_distribution", "persistence_increments")
QUANTILES = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]


def _probabilistic(entry: dict, crps: tuple[float, ...], coverage: tuple[float, ...]) -> dict:
    """``entry`` with quantiles: validation CRPS and 80 % coverage at each lead."""
    out = json.loads(json.dumps(entry))
    for blocks in (out["val"], out["overall"]):
        for i, k in enumerate(KEYS):
            blocks[k].update(crps=crps[i], coverage_80=coverage[i])
    out["levels"] = QUANTILES
    return out


def _prob_ref(crps: tuple[float, ...]) -> dict:
    return _probabilistic(_ref("climatology"), crps, (0.8, 0.8, 0.8))


def _decide_calibrated(model: dict):
    from soilcast.evaluation.gate import Calibration

    # the climatological distribution is the better reference at lead 1, the increments at 2 and 3
    metrics = Leaderboard.from_json({
        **{name: _ref(name) for name in REF_RMSE},
        "clim_distribution": _prob_ref((0.010, 0.020, 0.030)),
        "persistence_increments": _prob_ref((0.012, 0.015, 0.025)),
        "convlstm": model,
    })
    rule = Calibration(min_crps_skill=0.0, interval=0.8, tolerance=0.05, references=PROB_REFS)
    return decide(metrics, "rmse", 0.0, 0.02, None, benchmark_names(), rule)


def test_a_calibrated_probabilistic_winner_is_blessed_and_the_best_reference_is_per_lead():
    d = _decide_calibrated(_probabilistic(_entry(0.3), (0.008, 0.014, 0.020), (0.79, 0.82, 0.78)))
    assert d.blessed, d.reasons
    assert d.best_probabilistic_reference == {"1": "clim_distribution", "2": "persistence_increments",
                                              "3": "persistence_increments"}
    assert d.crps_skill_vs_best_probabilistic_reference["2"] == pytest.approx(1 - 0.014 / 0.015)
    assert d.coverage["validation"] == {"1": 0.79, "2": 0.82, "3": 0.78}


def test_the_gate_refuses_a_miscalibrated_model_and_says_where():
    """Skilful in MSE at every lead, but its 80 % interval covers 62 % at lead 3 (too narrow:
    every probability overconfident) and it loses to the increments' CRPS at lead 2."""
    d = _decide_calibrated(_probabilistic(_entry(0.3), (0.008, 0.016, 0.020), (0.80, 0.81, 0.62)))
    assert not d.blessed
    text = "\n".join(d.reasons)
    assert "lead 2 day(s) validation CRPS skill" in text and "persistence_increments" in text
    assert "lead 3 day(s) validation coverage of the 80% interval 0.62" in text
    assert "lead 1 day(s)" not in text.split("calibrated")[0].replace("weakest lead 1", "")


def test_a_point_forecast_is_not_held_to_calibration():
    d = _decide_calibrated(_entry(0.3))
    assert d.blessed and any("a point forecast" in r for r in d.reasons)
