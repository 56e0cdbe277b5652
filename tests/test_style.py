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
