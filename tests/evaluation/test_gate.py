"""Promotion gate: value thresholds vs climatology (and persistence, see test_skill.py) on the
validation years, change threshold vs the served champion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from soilcast.config import Config, save_config
from soilcast.evaluation.gate import blessing_path, decide, metrics_path, pick_winner, run_gate
from soilcast.records import Leaderboard


def _entry(rmse: float, skill: float, kind: str = "network") -> dict:
    block = {"rmse": rmse, "mae": rmse, "ubrmse": rmse, "skill_vs_climatology": skill}
    return {"status": "ok", "kind": kind, "n_windows": 10, "valid_period": ["2013-01-08", "2013-12-31"],
            "overall": dict(block), "seasons": {}, "basins": {}, "val": dict(block)}


def write_metrics(cfg: Config, **models: dict) -> dict:
    metrics = {
        "persistence": _entry(0.030, 0.5, "reference"),  # references never win, however good
        "climatology": _entry(0.060, 0.0, "reference"),
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


def fixed_scorer(rmse: float):
    return lambda cfg, version_dir: {"rmse": rmse, "mae": rmse, "ubrmse": rmse}


def test_winner_is_the_best_trained_network(tiny_cfg):
    metrics = write_metrics(tiny_cfg, convlstm=_entry(0.05, 0.3), lstm=_entry(0.04, 0.4), fc=_entry(0.07, -0.1))
    winner, scores = pick_winner(Leaderboard.from_json(metrics), "rmse")
    assert winner == "lstm"
    assert set(scores) == {"convlstm", "lstm", "fc"}  # not references, not skipped


def test_without_champion_passes_a_better_model(tiny_cfg):
    write_metrics(tiny_cfg, convlstm=_entry(0.05, 0.3))
    d = run_gate(tiny_cfg)
    assert d.blessed and d.winner == "convlstm" and d.champion is None
    saved = json.loads(blessing_path(tiny_cfg).read_text())
    assert saved["blessed"] is True and saved["skill_vs_climatology"] == pytest.approx(0.3)


def test_without_champion_blocks_a_model_worse_than_climatology(tiny_cfg):
    write_metrics(tiny_cfg, convlstm=_entry(0.065, -0.08))
    d = run_gate(tiny_cfg)
    assert not d.blessed
    assert any("below required" in r for r in d.reasons)


def test_champion_blocks_a_regression_beyond_tolerance(tiny_cfg):
    add_champion(tiny_cfg)
    write_metrics(tiny_cfg, convlstm=_entry(0.06 * 0.9, 0.2))
    # champion rmse 0.050; candidate 0.054 is 8 % worse > max_regression 2 %
    d = run_gate(tiny_cfg, scorer=fixed_scorer(0.050))
    assert not d.blessed
    assert d.champion["model"] == "lstm" and d.champion_score == pytest.approx(0.05)
    assert any("exceeds champion" in r for r in d.reasons)


def test_champion_passes_better_or_within_tolerance(tiny_cfg):
    add_champion(tiny_cfg)
    write_metrics(tiny_cfg, convlstm=_entry(0.0505, 0.2))  # 1 % worse: within 2 %
    assert run_gate(tiny_cfg, scorer=fixed_scorer(0.050)).blessed
    write_metrics(tiny_cfg, convlstm=_entry(0.040, 0.35))  # better
    d = run_gate(tiny_cfg, scorer=fixed_scorer(0.050))
    assert d.blessed and d.relative_change == pytest.approx(-0.2)


def test_champion_cannot_rescue_a_model_below_climatology(tiny_cfg):
    add_champion(tiny_cfg)
    write_metrics(tiny_cfg, convlstm=_entry(0.03, -0.01))
    assert not run_gate(tiny_cfg, scorer=fixed_scorer(0.050)).blessed


def test_unscorable_champion_fails_closed(tiny_cfg):
    add_champion(tiny_cfg)
    write_metrics(tiny_cfg, convlstm=_entry(0.04, 0.3))

    def broken(cfg, version_dir):
        raise ValueError("grid mismatch")

    d = run_gate(tiny_cfg, scorer=broken)
    assert not d.blessed and "grid mismatch" in d.champion["error"]


def test_champion_on_other_inputs_is_not_compared(tiny_cfg):
    """Other inputs: no re-scoring (it would fail late in TF); the thresholds alone decide."""
    add_champion(tiny_cfg, variables=tiny_cfg.variable_names[:-1])

    def must_not_run(cfg, version_dir):
        raise AssertionError("a champion on other inputs must not be re-scored")

    write_metrics(tiny_cfg, convlstm=_entry(0.04, 0.3))
    d = run_gate(tiny_cfg, scorer=must_not_run)
    assert d.blessed and "error" not in d.champion and "champion_score" not in d.to_json()
    why = d.champion["incomparable"]
    assert "trained on other inputs" in why
    assert str(tiny_cfg.variable_names[:-1]) in why and str(tiny_cfg.variable_names) in why
    assert any("cannot be compared" in r and "thresholds alone decide" in r for r in d.reasons)
    saved = json.loads(blessing_path(tiny_cfg).read_text())
    assert saved["champion"]["incomparable"] == why
    write_metrics(tiny_cfg, convlstm=_entry(0.065, -0.08))  # ... and they still bind
    assert not run_gate(tiny_cfg, scorer=must_not_run).blessed


def test_champion_without_a_variable_list_fails_closed(tiny_cfg):
    d = add_champion(tiny_cfg) / "assets.extra" / "soilcast_metadata.json"
    d.write_text(json.dumps({"model": "lstm", "version": 1}))
    write_metrics(tiny_cfg, convlstm=_entry(0.04, 0.3))
    decision = run_gate(tiny_cfg, scorer=fixed_scorer(0.05))
    assert not decision.blessed and "no 'variables'" in decision.champion["error"]


def test_no_trained_network_is_not_blessed():
    metrics = {"climatology": _entry(0.06, 0.0, "reference"), "fc": {"status": "skipped", "reason": "not trained"}}
    d = decide(Leaderboard.from_json(metrics), "rmse", 0.0, 0.02, None)
    assert d.blessed is False and d.winner is None


def test_cli_exit_codes(tiny_cfg, tmp_path):
    from soilcast.cli import app

    params = tmp_path / "params.yaml"
    save_config(tiny_cfg, params)
    runner = CliRunner()
    write_metrics(tiny_cfg, convlstm=_entry(0.065, -0.08))
    res = runner.invoke(app, ["gate", "-p", str(params)])
    assert res.exit_code == 3, res.output
    res = runner.invoke(app, ["gate", "-p", str(params), "--no-fail"])
    assert res.exit_code == 0 and "NOT blessed" in res.output
    write_metrics(tiny_cfg, convlstm=_entry(0.05, 0.3))
    res = runner.invoke(app, ["gate", "-p", str(params)])
    assert res.exit_code == 0 and "BLESSED" in res.output
