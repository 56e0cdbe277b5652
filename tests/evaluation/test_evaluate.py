"""evaluate(): all models on the same validation and test windows at every lead, skipped and
stale networks, the references (damped persistence and linear included), leaderboard by lead,
plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from soilcast.ml.models import registry


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from soilcast.testing.config import tiny_config
    from soilcast.testing.stages import evaluate, train_model
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path_factory.mktemp("evaluate"), {"training": {"epochs": 1, "steps_per_epoch": 2}})
    write_synthetic_store(cfg)
    train_model(cfg, "fc", verbose=0)  # only one network trained: the rest must be skipped
    return cfg, evaluate(cfg)


REFERENCES = {"persistence", "climatology", "damped_persistence", "linear", "clim_distribution",
              "persistence_increments"}


def test_metrics_cover_trained_and_reference_models(evaluated):
    cfg, metrics = evaluated
    keys = [str(k) for k in cfg.window.leads]
    assert len(keys) > 1
    on_disk = json.loads((cfg.paths.artifacts_dir / "eval" / "metrics.json").read_text())
    assert on_disk == metrics.to_json()  # the record writes exactly what it holds
    assert {n for n, m in metrics.items() if m.status == "ok"} == {"fc"} | REFERENCES
    assert metrics.leads() == cfg.window.leads
    for name in {"fc"} | REFERENCES:  # validation scores for the gate, at every lead
        assert metrics[name].leads == cfg.window.leads and list(metrics[name].val) == keys
        assert all(metrics[name].val[k]["rmse"] > 0 and metrics[name].val[k]["n"] > 0 for k in keys)
    assert all(metrics[n].kind == "reference" for n in REFERENCES)
    for name in set(registry.names()) - {"fc"}:
        assert metrics[name].status == "skipped" and "not trained" in metrics[name].reason
    fc = metrics["fc"]
    assert fc.kind == "network" and fc.n_windows == metrics["climatology"].n_windows
    assert fc.init_period[0].startswith(str(cfg.split.test_years[0]))
    assert list(fc.seasons) == list(cfg.evaluation.seasons) and set(fc.basins) == {"West", "East"}
    for by_lead in [fc.overall, *fc.seasons.values(), *fc.basins.values()]:
        assert list(by_lead) == keys
        for block in by_lead.values():
            assert block["rmse"] > 0 and np.isfinite(block["skill_vs_climatology"])
    for k in keys:
        # the references against themselves: zero skill by construction, at every lead
        assert metrics["climatology"].overall[k]["skill_vs_climatology"] == pytest.approx(0.0)
        assert metrics["persistence"].overall[k]["skill_vs_persistence"] == pytest.approx(0.0)
        # seasons (of each lead's valid dates) partition the windows
        n = sum(fc.seasons[s][k]["n"] for s in cfg.evaluation.seasons)
        assert n == fc.overall[k]["n"]
    # probabilistic scores beside the deterministic ones, at every lead
    assert fc.levels == cfg.forecast.quantiles and metrics["persistence"].levels == []
    for k in keys:
        block = fc.overall[k]
        assert block["crps"] > 0 and 0.0 <= block["coverage_80"] <= 1.0 and block["spread_error_ratio"] > 0
        assert {"crps_skill_vs_clim_distribution", "crps_skill_vs_persistence_increments", "brier_skill_d1"} <= set(block)
        ref = metrics["clim_distribution"].overall[k]
        assert ref["crps_skill_vs_clim_distribution"] == pytest.approx(0.0) and ref["brier_skill_d1"] == pytest.approx(0.0)
        # a point forecast's CRPS is its MAE
        assert metrics["persistence"].overall[k]["crps"] == pytest.approx(metrics["persistence"].overall[k]["mae"])
        pit = fc.calibration[k]["pit"]
        assert len(pit) == 10 and sum(pit) == pytest.approx(1.0)
        assert set(fc.calibration[k]["reliability"]) == {"forecast", "observed", "count"}
        assert fc.val[k]["crps"] > 0 and "coverage_80" in fc.val[k]  # what the gate reads
    assert metrics["persistence"].calibration == {}
    # soil moisture has memory: persistence is worth less the further ahead it looks
    pers = [metrics["persistence"].overall[k]["mse"] for k in keys]
    assert pers == sorted(pers) and pers[-1] > 2 * pers[0]


def _table(board: str, title: str) -> list[list[str]]:
    """The rows (cells) of the table under the heading ``title``."""
    lines = board.splitlines()
    start = lines.index(title)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("| ") and not line.startswith("| rank"):
            rows.append([c.strip() for c in line.split("|")[1:-1]])
    return rows


def test_leaderboard_and_plots(evaluated):
    from soilcast.evaluation.leads import best_references, mean_over_leads, skill_vs_best
    from soilcast.ml.models.references import benchmark_names

    cfg, metrics = evaluated
    out = cfg.paths.artifacts_dir / "eval"
    board = (out / "leaderboard.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| rank"))
    assert [c.strip() for c in header.split("|")[4:-1]] == [f"lead {k}" for k in cfg.window.leads] + ["mean"]
    rows = _table(board, "## Skill vs the best reference")
    names = [r[1] for r in rows]
    assert set(names) == {"fc"} | REFERENCES and [r[0] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    best = best_references(metrics, benchmark_names())
    assert set(best) == {str(k) for k in cfg.window.leads} and set(best.values()) <= set(benchmark_names())
    means = [mean_over_leads(skill_vs_best(metrics, n, best, "test")) for n in names]
    assert means == sorted(means, reverse=True)  # best first: mean over leads of the test skill
    for row, mean in zip(rows, means):
        assert row[-1] == f"{mean:.4f}"
    for metric in ("rmse", "skill_vs_persistence", "skill_vs_climatology"):  # a table by lead each
        for row in _table(board, f"## {metric}"):
            got = [metrics[row[1]].overall[str(k)][metric] for k in cfg.window.leads]
            assert row[3:-1] == [f"{v:.4f}" for v in got], (metric, row[1])
    assert "val rmse" in board
    assert "Skipped" in board and "convlstm" in board
    plots = {p.name for p in (out / "plots").iterdir()}
    seasons = (cfg.evaluation.wet_season, cfg.evaluation.dry_season)
    assert {"skill_vs_lead.png", "scorecard.png", "skill_map_fc.png", "rmse_map_fc.png", "rmse_map_climatology.png",
            "season_skill.png", "basin_skill.png", "timeseries.png", "obs_vs_forecast_density.png",
            *(f"obs_vs_forecast_{s}.png" for s in seasons)} <= plots
    assert not {f"skill_map_{r}.png" for r in REFERENCES} & plots  # skill maps are the networks'
    assert all((out / "plots" / p).read_bytes()[:4] == b"\x89PNG" for p in plots)


def test_a_model_trained_with_other_params_is_refused(evaluated, tmp_path):
    """A leftover model.keras from another config is never scored silently."""
    import shutil

    from soilcast.testing.config import tiny_config
    from soilcast.testing.stages import evaluate

    cfg, _ = evaluated
    other = tiny_config(tmp_path, {"training": {"epochs": 1, "steps_per_epoch": 2, "learning_rate": 0.5}})
    shutil.copytree(cfg.paths.processed, other.paths.processed)
    shutil.copytree(cfg.paths.artifacts_dir / "train", other.paths.artifacts_dir / "train")
    metrics = evaluate(other)
    assert metrics["fc"].status == "skipped" and "other params or data" in metrics["fc"].reason
    assert "soilcast train --model fc" in metrics["fc"].reason
    (other.paths.artifacts_dir / "train/fc/record.json").unlink()  # a run killed before its record
    assert "did not finish" in evaluate(other)["fc"].reason
