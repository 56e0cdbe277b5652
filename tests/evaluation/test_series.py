"""Basin-mean series by hand, the density counts, and their figures."""

from __future__ import annotations

import numpy as np
import pytest

from soilcast.evaluation.metrics import area_weights
from soilcast.evaluation.series import basin_series, density, plot_density, plot_timeseries

PNG = b"\x89PNG"


def test_basin_series_is_the_area_weighted_mean_over_the_basin_mask(figure_inputs):
    forecasts, metrics, basins, cfg = figure_inputs
    fc = forecasts["net_a"].at_lead(0)
    got = basin_series(fc, basins)
    assert list(got) == ["West", "East"]
    w = np.cos(np.deg2rad(fc.lat))[:, None] * np.ones(fc.mask.shape)
    for b, name in basins.items():
        cells = fc.mask & (fc.basin_id == b)
        for key in ("obs", "pred"):
            x = getattr(fc, key)
            by_hand = [float((x[n][cells] * w[cells]).sum() / w[cells].sum()) for n in (0, 57)]
            assert got[name][key][[0, 57]] == pytest.approx(by_hand)
    assert area_weights(fc.lat, fc.mask)[0, 0] == 0.0  # the masked corner weighs nothing


def test_density_counts_the_masked_finite_pairs():
    edges = np.linspace(0.0, 0.5, 6)
    obs = np.array([[[0.05, 0.25]], [[0.45, np.nan]]])
    pred = np.array([[[0.06, 0.15]], [[0.44, 0.3]]])
    counts = density(pred, obs, np.array([[True, True]]), edges)
    assert counts.sum() == 3 and counts[0, 0] == 1 and counts[2, 1] == 1 and counts[4, 4] == 1
    assert density(pred, obs, np.array([[True, False]]), edges).sum() == 2


def test_timeseries_and_density_figures(figure_inputs, captured, tmp_path):
    forecasts, metrics, basins, cfg = figure_inputs
    lines = {"best network: net_b": "net_b", "persistence": "persistence"}
    path = plot_timeseries(forecasts, lines, basins, tmp_path, cfg)
    assert path.name == "timeseries.png" and path.read_bytes()[:4] == PNG
    fig = captured[path.name]
    assert len(fig.axes) == 2 * len(basins)  # a row per basin, wet and dry season columns
    assert [ax.get_title() for ax in fig.axes[:2]] == [f"West, {cfg.evaluation.wet_season}",
                                                      f"West, {cfg.evaluation.dry_season}"]
    mean = basin_series(forecasts["net_b"].at_lead(0), basins)["West"]["pred"]
    first = fig.axes[0].lines[1].get_ydata()
    assert np.isin(np.asarray(first), mean).all() and len(first) == 122  # JJAS of 2013, whole
    assert "validation" in fig._suptitle.get_text()
    dens = plot_density(forecasts, lines, tmp_path, cfg)
    fig = captured[dens.name]
    panels = fig.axes[:4]  # best network and persistence x first and last lead, then the colour bar
    assert [ax.get_title() for ax in panels[:2]] == ["best network: net_b, lead 1 d", "persistence, lead 1 d"]
    assert {ax.get_xlim() for ax in panels} == {tuple(cfg.evaluation.figures.scales.soil_moisture)}
    assert {type(c.norm).__name__ for ax in panels for c in ax.collections} == {"LogNorm"}
