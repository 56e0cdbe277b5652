"""Hindcast figures draw the numbers the hindcast scored: basin means weighted as the scores
weight them, skills exactly as scores.json holds them, seasons without days left out."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from soilcast.layout import HindcastDir
from soilcast.serving.hindcast import ValidForecasts
from soilcast.serving.hindcast_figures import (
    FigureInputs,
    draw_hydrographs,
    draw_skill_by_lead,
    draw_skill_by_season,
    runs_text,
    season_spans,
    skill_by_season,
    write_figures,
)
from soilcast.testing.config import tiny_config

SERVED = "standin v3"
LEADS = ("1", "3")
LEVELS = (0.1, 0.5, 0.9)
SEASONS = {"winter_jf": [1, 2], "premonsoon_mam": [3, 4, 5], "monsoon_jjas": [6, 7, 8, 9],
           "postmonsoon_ond": [10, 11, 12]}


def grid() -> SimpleNamespace:
    """4 x 5 cells, two basins, one cell outside the mask (NaN everywhere there)."""
    lat = np.array([10.0, 20.0, 30.0, 40.0])
    mask = np.ones((4, 5), bool)
    mask[0, 0] = False
    basin_id = np.where(np.arange(5)[None, :] < 2, 1, 2) * mask
    return SimpleNamespace(lat=lat, mask=mask, basin_id=basin_id)


def forecasts(g: SimpleNamespace, quantiles: bool = True) -> dict[str, ValidForecasts]:
    """Served and persistence forecasts on 40 valid days across May and June."""
    rng = np.random.default_rng(3)
    valid = pd.date_range("2013-05-10", periods=40)
    n, k = len(valid), len(LEADS)
    nan = np.where(g.mask, 0.0, np.nan)
    obs = np.broadcast_to(rng.uniform(0.1, 0.4, (n, 1, 4, 5)) + nan, (n, k, 4, 5))
    pred = rng.uniform(0.1, 0.4, (n, k, 4, 5)) + nan
    q = np.stack([pred - 0.05, pred, pred + 0.05], axis=2) if quantiles else None
    leads = tuple(int(x) for x in LEADS)
    return {SERVED: ValidForecasts(pred, obs, valid, leads, g.basin_id, SERVED, q, LEVELS if quantiles else ()),
            "persistence": ValidForecasts(rng.uniform(0.1, 0.4, (n, k, 4, 5)) + nan, obs, valid, leads, g.basin_id,
                                          "persistence")}


def block(mse: float, n: int = 20, **skills: float | None) -> dict:
    return {"mse": mse, "n": n, **skills}


def summary() -> dict:
    """A scores.json as the hindcast writes it (the keys the figures read): MAM and JJAS have
    days, winter and post-monsoon none; lead 3's skill vs climatology undefined (None)."""
    served = {"overall": {"1": block(0.004, skill_vs_persistence=0.2, skill_vs_climatology=0.7),
                          "3": block(0.006, skill_vs_persistence=0.4, skill_vs_climatology=None)},
              "seasons": {"monsoon_jjas": {"1": block(0.005, skill_vs_persistence=0.1),
                                           "3": block(0.007, skill_vs_persistence=0.3)},
                          "winter_jf": {"1": block(None, 0), "3": block(None, 0)},
                          "premonsoon_mam": {"1": block(0.003, skill_vs_persistence=0.25),
                                             "3": block(0.004, skill_vs_persistence=-0.5)},
                          "postmonsoon_ond": {"1": block(None, 0), "3": block(None, 0)}}}

    def ref(scale: float) -> dict:
        return {"overall": {k: block(scale * (i + 1)) for i, k in enumerate(LEADS)},
                "seasons": {s: {k: block(scale * (j + 2) * (i + 1)) for i, k in enumerate(LEADS)}
                            for j, s in enumerate(SEASONS)}}

    scores = {SERVED: served, "persistence": ref(0.005), "damped_persistence": ref(0.004)}
    return {"period": "2013-05-10..2013-06-18", "model": "standin", "served": "label stable (default) -> version 3",
            "scores": scores, "best_reference": {"1": "persistence", "3": "damped_persistence"},
            "skill_vs_best_reference": {SERVED: {"1": 0.2, "3": -0.1}}}


@pytest.fixture
def inputs(tmp_path) -> FigureInputs:
    g = grid()
    cfg = tiny_config(tmp_path)
    return FigureInputs(forecasts(g), SERVED, "persistence", summary(), g, {1: "West", 2: "East"},
                        SEASONS, cfg.evaluation.figures)


def lines_of(ax) -> dict[str, np.ndarray]:
    return {line.get_label(): np.asarray(line.get_ydata(), np.float64) for line in ax.get_lines()}


def test_hydrographs_draw_area_weighted_basin_means(inputs):
    fig = draw_hydrographs(inputs)
    g, fc, pers = inputs.grid, inputs.fcs[SERVED], inputs.fcs["persistence"]
    axes = {ax.get_label(): ax for ax in fig.axes}
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["West", "East"]
    for bid in (1, 2):
        w = np.cos(np.deg2rad(g.lat))[:, None] * (g.basin_id == bid)  # by hand: cos-lat over the basin's cells

        def mean(field: np.ndarray, w: np.ndarray = w) -> np.ndarray:
            return np.nansum(field * w, axis=(1, 2)) / w.sum()

        drawn = lines_of(axes[f"basin {bid}"])
        np.testing.assert_allclose(drawn["observed"], mean(fc.obs[:, 0]))
        np.testing.assert_allclose(drawn["served, lead 1 d"], mean(fc.pred[:, 0]))
        np.testing.assert_allclose(drawn["served, lead 3 d"], mean(fc.pred[:, 1]))
        np.testing.assert_allclose(drawn["persistence, lead 1 d"], mean(pers.pred[:, 0]))
        band = axes[f"basin {bid}"].collections[0].get_paths()[0].vertices[:, 1]
        assert np.isclose(band.min(), mean(fc.quantiles[:, 0, 0]).min())  # the 10 % line is the band's floor
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "served 10-90 %, lead 1 d" in labels
    assert labels[-2:] == ["season premonsoon_mam", "season monsoon_jjas"]  # only the seasons shown
    assert "standin, label stable (default) -> version 3" in fig._suptitle.get_text()
    assert "2013-05-10..2013-06-18" in fig._suptitle.get_text()


def test_a_point_forecast_has_no_band(inputs):
    fig = draw_hydrographs(replace(inputs, fcs=forecasts(inputs.grid, quantiles=False)))
    assert not any("10-90" in t.get_text() for t in fig.legends[0].get_texts())


def test_skill_by_lead_plots_the_scores(inputs):
    fig = draw_skill_by_lead(inputs)
    ax = fig.axes[0]
    drawn = lines_of(ax)
    s = inputs.summary
    overall = s["scores"][SERVED]["overall"]
    np.testing.assert_array_equal(drawn["vs persistence"], [overall[k]["skill_vs_persistence"] for k in LEADS])
    np.testing.assert_array_equal(drawn["vs climatology"], [0.7, np.nan])  # undefined is not drawn
    np.testing.assert_array_equal(drawn["vs the best reference"],
                                  [s["skill_vs_best_reference"][SERVED][k] for k in LEADS])
    assert ax.get_lines()[0].get_label() == "reference (skill 0)" and drawn["reference (skill 0)"].tolist() == [0, 0]
    assert list(ax.get_xticks()) == [1, 3]
    assert "1 d persistence; 3 d damped_persistence" in ax.get_xlabel()


def test_skill_by_season_omits_seasons_without_days(inputs):
    fig = draw_skill_by_season(inputs)
    s = inputs.summary
    axes = {ax.get_label(): ax for ax in fig.axes}
    pers, best = axes["skill_vs_persistence"], axes["skill_vs_best_reference"]
    rows = [t.get_text() for t in pers.get_yticklabels()]
    assert rows == ["premonsoon_mam", "monsoon_jjas"]  # config order, not scores.json's
    seasons = s["scores"][SERVED]["seasons"]
    np.testing.assert_array_equal(pers.images[0].get_array(),
                                  [[seasons[r][k]["skill_vs_persistence"] for k in LEADS] for r in rows])
    want = [[1 - seasons[r][k]["mse"] / s["scores"][s["best_reference"][k]]["seasons"][r][k]["mse"] for k in LEADS]
            for r in rows]
    np.testing.assert_allclose(best.images[0].get_array(), want)
    assert "no days in the period: winter_jf, postmonsoon_ond (omitted)" in fig._suptitle.get_text()


def test_every_season_with_days_is_kept():
    s = summary()
    s["scores"][SERVED]["seasons"]["winter_jf"]["3"]["n"] = 1  # one lead with days is enough
    panels, omitted = skill_by_season(s, SERVED, list(SEASONS))
    assert list(panels["skill_vs_persistence"]) == ["winter_jf", "premonsoon_mam", "monsoon_jjas"]
    assert omitted == ["postmonsoon_ond"]


def test_season_spans_follow_the_valid_days():
    valid = pd.date_range("2013-02-26", "2013-03-03")
    assert season_spans(valid, SEASONS) == [("winter_jf", 0, 2), ("premonsoon_mam", 3, 5)]


def test_best_reference_runs_are_merged():
    assert runs_text({"1": "persistence", "2": "persistence", "3": "linear", "7": "linear"}) == \
        "1-2 d persistence; 3-7 d linear"


def test_figures_are_pngs_in_the_hindcast_folder(inputs, tmp_path):
    out = HindcastDir(tmp_path / "hc")
    written = write_figures(out, inputs)
    assert written == list(out.figures)
    assert [p.name for p in written] == ["hydrographs.png", "skill_by_lead.png", "skill_by_season.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
