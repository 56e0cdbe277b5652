"""Evaluation maps: per-cell skill and RMSE by hand, the fixed scales read back from the
figures (skill centred on 0), one map per network."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from soilcast.evaluation.maps import cell_mse, plot_day_maps, plot_rmse_maps, plot_skill_maps, rmse_map, skill_map

PNG = b"\x89PNG"


def view(pred, obs, mask):
    return SimpleNamespace(pred=np.asarray(pred, float), obs=np.asarray(obs, float), mask=np.asarray(mask, bool))


def test_skill_map_is_one_minus_mse_over_the_reference_mse_per_cell():
    obs = np.array([[[0.2, 0.3]], [[0.4, 0.1]], [[0.3, 0.3]]])  # [N=3, H=1, W=2]
    model = obs + np.array([[[0.01, 0.1]], [[-0.02, 0.1]], [[0.0, np.nan]]])
    ref = obs + np.array([[[0.05, 0.0]], [[0.05, 0.0]], [[0.05, 0.2]]])
    got = skill_map(view(model, obs, [[True, True]]), view(ref, obs, [[True, True]]))
    assert got[0, 0] == pytest.approx(1 - ((0.01**2 + 0.02**2) / 3) / 0.05**2)
    assert np.isnan(got[0, 1])  # the reference is perfect on the days both forecast
    masked = skill_map(view(model, obs, [[False, True]]), view(ref, obs, [[True, True]]))
    assert np.isnan(masked[0, 0])


def test_cell_mse_and_rmse_over_the_finite_days():
    obs = np.zeros((2, 1, 2))
    pred = np.array([[[0.1, 0.2]], [[0.3, np.nan]]])
    assert cell_mse(pred, obs)[0].tolist() == pytest.approx([0.05, 0.04])
    assert rmse_map(view(pred, obs, [[True, False]]))[0, 0] == pytest.approx(np.sqrt(0.05))
    assert np.isnan(rmse_map(view(pred, obs, [[True, False]]))[0, 1])


def test_skill_maps_are_diverging_around_zero_on_the_fixed_scale(figure_inputs, captured, tmp_path):
    forecasts, metrics, basins, cfg = figure_inputs
    refs = {"persistence": "persistence", "climatology": "climatology"}
    written = plot_skill_maps(forecasts, ["net_a", "net_b"], refs, tmp_path, cfg)
    assert [p.name for p in written] == ["skill_map_net_a.png", "skill_map_net_b.png"]
    assert all(p.read_bytes()[:4] == PNG for p in written)
    fig = captured["skill_map_net_a.png"]
    from matplotlib.collections import QuadMesh

    panels, bar = fig.axes[:4], fig.axes[4]  # 2 references x first and last lead, then the colour bar
    meshes = [c for ax in panels for c in ax.collections if isinstance(c, QuadMesh)]
    assert len(meshes) == 4 and bar.get_ylabel().startswith("MSE skill")
    lo, hi = cfg.evaluation.figures.scales.skill
    for mesh in meshes:
        assert (mesh.norm.vmin, mesh.norm.vmax) == (lo, hi) and float(mesh.norm(0.0)) == 0.5
        assert mesh.get_cmap().name == "RdBu"
    fc, ref = forecasts["net_a"].at_lead(0), forecasts["persistence"].at_lead(0)
    np.testing.assert_allclose(np.ma.filled(meshes[0].get_array(), np.nan), skill_map(fc, ref), equal_nan=True)


def test_rmse_and_day_maps_share_fixed_scales(figure_inputs, captured, tmp_path):
    forecasts, metrics, basins, cfg = figure_inputs
    assert len(plot_rmse_maps(forecasts, tmp_path, cfg)) == len(forecasts)
    norms = {(c.norm.vmin, c.norm.vmax) for name, fig in captured.items() for ax in fig.axes for c in ax.collections
             if name.startswith("rmse_map_") and hasattr(c, "norm") and c.get_array() is not None}
    assert norms == {tuple(cfg.evaluation.figures.scales.rmse)}
    days = plot_day_maps(forecasts, ["net_a", "persistence"], tmp_path, cfg)
    assert {p.name for p in days} == {f"obs_vs_forecast_{cfg.evaluation.wet_season}.png",
                                      f"obs_vs_forecast_{cfg.evaluation.dry_season}.png"}
    fig = captured[days[0].name]
    meshes = [c for ax in fig.axes for c in ax.collections if hasattr(c, "norm") and c.get_array() is not None]
    assert {(m.norm.vmin, m.norm.vmax) for m in meshes} == {tuple(cfg.evaluation.figures.scales.soil_moisture)}
    assert {m.get_cmap().name for m in meshes} == {cfg.target.colormap}
    assert "soilcast" in fig._suptitle.get_text() and "valid" in fig._suptitle.get_text()
