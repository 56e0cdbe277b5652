"""write_plots: every evaluation figure from the test forecasts and the scores, the best
network of the series chosen on validation."""

from __future__ import annotations

from soilcast.evaluation.plots import compared, write_plots


def test_the_series_compare_the_validation_best_network_with_persistence(figure_inputs):
    forecasts, metrics, basins, cfg = figure_inputs
    # net_a has the lower TEST MSE (conftest); net_b the lower validation MSE
    assert metrics["net_a"].overall["1"]["mse"] < metrics["net_b"].overall["1"]["mse"]
    assert compared(forecasts, metrics) == {"best network: net_b": "net_b", "persistence": "persistence"}
    assert compared({"net_a": forecasts["net_a"]}, metrics) == {"best network: net_a": "net_a"}


def test_every_figure_is_written_as_png(figure_inputs, tmp_path):
    forecasts, metrics, basins, cfg = figure_inputs
    out = tmp_path / "plots"
    out.mkdir()
    (out / "stale.png").write_bytes(b"old")
    written = write_plots(forecasts, metrics, basins, out, cfg)
    ev = cfg.evaluation
    expected = {"skill_vs_lead.png", "scorecard.png", "season_skill.png", "basin_skill.png", "timeseries.png",
                "obs_vs_forecast_density.png", f"obs_vs_forecast_{ev.wet_season}.png",
                f"obs_vs_forecast_{ev.dry_season}.png", "skill_map_net_a.png", "skill_map_net_b.png",
                *(f"rmse_map_{n}.png" for n in forecasts)}
    assert {p.name for p in out.iterdir()} == {p.name for p in written} == expected
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in written)
