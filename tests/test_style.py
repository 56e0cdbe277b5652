"""The figure style: one entry per configured scale, diverging scales centred on 0, arrows
where the data run past the fixed limits."""

from __future__ import annotations

import numpy as np

from soilcast import style
from soilcast.config import FigureScales, load_config
from tests.conftest import PARAMS


def test_every_configured_scale_has_a_quantity_and_back():
    assert list(style.QUANTITIES) == list(FigureScales.model_fields)


def test_diverging_scales_put_zero_at_the_middle_colour():
    figures = load_config(PARAMS, {"evaluation": {"figures": {"scales": {"skill": [-1.0, 0.5]}}}}).evaluation.figures
    kw = style.color_scale(figures, "skill")
    assert kw["cmap"] == "RdBu" and float(kw["norm"](0.0)) == 0.5 and float(kw["norm"](0.5)) == 1.0
    rmse = style.color_scale(figures, "rmse", cmap="viridis")
    assert rmse["cmap"] == "viridis" and float(rmse["norm"](figures.scales.rmse[1])) == 1.0


def test_the_colour_bar_arrows_say_which_end_the_data_pass():
    figures = load_config(PARAMS).evaluation.figures
    lo, hi = figures.scales.skill
    assert style.extend(np.array([lo, hi, np.nan]), figures, "skill") == "neither"
    assert style.extend(np.array([lo - 1, 0.0]), figures, "skill") == "min"
    assert style.extend(np.array([0.0, hi + 1]), figures, "skill") == "max"
    assert style.extend(np.array([lo - 1, hi + 1]), figures, "skill") == "both"
    assert style.extend(np.array([np.nan]), figures, "skill") == "neither"


def test_saved_figures_are_pngs_at_the_configured_resolution(tmp_path):
    figures = load_config(PARAMS).evaluation.figures
    fig, ax = style.pyplot().subplots(figsize=(2, 1))
    ax.plot([0, 1])
    style.save(fig, tmp_path / "a.png", figures)
    from PIL import Image

    with Image.open(tmp_path / "a.png") as img:
        assert img.format == "PNG" and round(img.info["dpi"][0]) == figures.dpi


def test_outlines_run_along_cell_edges_between_different_ids():
    lon, lat = np.array([0.0, 1.0, 2.0]), np.array([10.0, 11.0])
    ids = np.array([[1, 1, 2], [0, 1, 2]])
    segs = {tuple(map(tuple, s)) for s in style.basin_segments(lon, lat, ids)}
    # basin 1 | basin 2 at lon 1.5, both rows; basin 1 above the masked cell (0, 11) at lat 10.5
    assert ((1.5, 9.5), (1.5, 10.5)) in segs and ((1.5, 10.5), (1.5, 11.5)) in segs
    assert ((-0.5, 10.5), (0.5, 10.5)) in segs
    assert ((0.5, 10.5), (0.5, 11.5)) in segs  # the masked cell's edge to basin 1
    assert ((-0.5, 9.5), (-0.5, 10.5)) in segs  # the grid's border closes the mask's edge
    assert ((0.5, 9.5), (0.5, 10.5)) not in segs  # inside basin 1: no line
    assert style.cell_edges(lon).tolist() == [-0.5, 0.5, 1.5, 2.5]


def test_version_names_the_package_and_the_params_not_their_paths(tmp_path):
    import soilcast

    cfg = load_config(PARAMS)
    moved = load_config(PARAMS, {"paths": {"artifacts_dir": str(tmp_path)}})
    other = load_config(PARAMS, {"evaluation": {"figures": {"dpi": 91}}})
    assert style.version() == f"soilcast {soilcast.__version__}"
    assert style.version(cfg).startswith(style.version() + ", params ")
    assert style.version(cfg) == style.version(moved) != style.version(other)
    assert style.title("RMSE", style.version(), style.period("2013-01-01", "2013-12-31")) == (
        f"RMSE · soilcast {soilcast.__version__} · test inits 2013-01-01–2013-12-31")
