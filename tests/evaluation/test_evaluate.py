"""evaluate(): all models on the same validation and test windows, skipped and stale networks,
the linear reference, leaderboard, plots."""

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


def test_metrics_cover_trained_and_reference_models(evaluated):
    cfg, metrics = evaluated
    on_disk = json.loads((cfg.paths.artifacts_dir / "eval" / "metrics.json").read_text())
    assert on_disk == metrics.to_json()  # the record writes exactly what it holds
    assert {n for n, m in metrics.items() if m.status == "ok"} == {"fc", "persistence", "climatology", "linear"}
    for name in ("fc", "persistence", "climatology", "linear"):  # validation scores for the gate
        assert metrics[name].val["rmse"] > 0 and metrics[name].val["n"] > 0
    assert metrics["linear"].kind == "reference"
    for name in set(registry.names()) - {"fc"}:
        assert metrics[name].status == "skipped" and "not trained" in metrics[name].reason
    fc = metrics["fc"]
    assert fc.kind == "network" and fc.n_windows == metrics["climatology"].n_windows
    assert set(fc.seasons) == {"monsoon_jjas", "rest"} and set(fc.basins) == {"West", "East"}
    for block in [fc.overall, *fc.seasons.values(), *fc.basins.values()]:
        assert block["rmse"] > 0 and np.isfinite(block["skill_vs_climatology"])
    # the references against themselves: zero skill by construction
    assert metrics["climatology"].overall["skill_vs_climatology"] == pytest.approx(0.0)
    assert metrics["persistence"].overall["skill_vs_persistence"] == pytest.approx(0.0)
    # seasons partition the windows
    n = sum(fc.seasons[s]["n"] for s in ("monsoon_jjas", "rest"))
    assert n == fc.overall["n"]


def test_leaderboard_and_plots(evaluated):
    cfg, metrics = evaluated
    out = cfg.paths.artifacts_dir / "eval"
    board = (out / "leaderboard.md").read_text()
    rows = [line.split("|")[2].strip() for line in board.splitlines() if line.startswith("| ") and "rank" not in line]
    rmse = [metrics[n].overall["rmse"] for n in rows]
    assert set(rows) == {"fc", "persistence", "climatology", "linear"} and rmse == sorted(rmse)
    assert "val rmse" in board
    assert "Skipped" in board and "convlstm" in board
    plots = {p.name for p in (out / "plots").iterdir()}
    assert {"rmse_map_fc.png", "rmse_map_climatology.png", "obs_vs_forecast_monsoon.png",
            "obs_vs_forecast_dry.png", "basin_skill.png", "timeseries.png"} <= plots
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
