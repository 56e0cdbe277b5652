"""Evaluation charts: skill per season and basin against the best reference (chosen on
validation) by hand, legends beside the axes, the scorecard on the fixed skill scale."""

from __future__ import annotations

import pytest

from soilcast.evaluation.charts import group_skill, plot_group_skill, plot_scorecard, plot_skill_vs_lead
from soilcast.evaluation.leads import best_references
from soilcast.records import Leaderboard

PNG = b"\x89PNG"


def entry(kind: str, season_mse: dict[str, list[float]], val_mse: list[float]) -> dict:
    blocks = {s: {str(k): {"mse": v} for k, v in zip((1, 2), mses)} for s, mses in season_mse.items()}
    return {"status": "ok", "kind": kind, "n_windows": 10, "leads": [1, 2], "init_period": ["2013-01-01", "2013-12-31"],
            "overall": blocks["wet"], "seasons": blocks, "basins": {"West": blocks["dry"]},
            "val": {str(k): {"mse": v} for k, v in zip((1, 2), val_mse)}}


@pytest.fixture
def board() -> Leaderboard:
    # validation: persistence is best at lead 1, climatology at lead 2 (on test, persistence would win both)
    return Leaderboard.from_json({
        "net": entry("network", {"wet": [1.0, 2.0], "dry": [0.5, 1.5]}, [1.0, 1.0]),
        "persistence": entry("reference", {"wet": [2.0, 3.0], "dry": [1.0, 2.0]}, [1.0, 4.0]),
        "climatology": entry("reference", {"wet": [8.0, 4.0], "dry": [4.0, 6.0]}, [3.0, 2.0]),
    }, "test")


def test_group_skill_is_against_the_validation_best_reference_of_the_same_group(board):
    best = best_references(board, ("persistence", "climatology"))
    assert best == {"1": "persistence", "2": "climatology"}
    assert group_skill(board, "net", "seasons", "wet", best) == pytest.approx({"1": 1 - 1 / 2, "2": 1 - 2 / 4})
    assert group_skill(board, "net", "seasons", "dry", best) == pytest.approx({"1": 1 - 0.5 / 1, "2": 1 - 1.5 / 6})
    assert group_skill(board, "net", "basins", "West", best) == pytest.approx({"1": 0.5, "2": 0.75})
    assert group_skill(board, "net", "seasons", "absent", best) == {"1": None, "2": None}


def test_season_and_basin_bars_with_the_legend_outside_the_axes(figure_inputs, captured, tmp_path):
    forecasts, metrics, basins, cfg = figure_inputs
    path = plot_group_skill(metrics, "seasons", list(cfg.evaluation.seasons), tmp_path, cfg)
    assert path.name == "season_skill.png" and path.read_bytes()[:4] == PNG
    fig = captured[path.name]
    axes = [ax for ax in fig.axes if ax.patches]
    assert len(axes) == 2  # the first and the last lead
    assert [t.get_text() for t in axes[-1].get_xticklabels()] == list(cfg.evaluation.seasons)
    assert len(axes[0].patches) == 2 * len(cfg.evaluation.seasons)  # two networks, no reference
    legend = fig.legends[0].get_window_extent()
    assert not any(legend.overlaps(ax.get_window_extent()) for ax in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["net_a", "net_b"]
    basin = plot_group_skill(metrics, "basins", list(basins.values()), tmp_path, cfg)
    assert basin.name == "basin_skill.png" and basin.read_bytes()[:4] == PNG
    assert plot_group_skill(metrics, "basins", [], tmp_path, cfg) is None


def test_scorecard_and_skill_vs_lead(figure_inputs, captured, tmp_path):
    forecasts, metrics, basins, cfg = figure_inputs
    card = plot_scorecard(metrics, tmp_path, cfg)
    im = captured[card.name].axes[0].images[0]
    assert (im.norm.vmin, im.norm.vmax) == tuple(cfg.evaluation.figures.scales.skill) and float(im.norm(0.0)) == 0.5
    title = captured[card.name].axes[0].get_title()
    assert "soilcast" in title and "test inits 2013-02-20–2013-10-15" in title
    assert plot_skill_vs_lead(metrics, tmp_path, cfg).read_bytes()[:4] == PNG
