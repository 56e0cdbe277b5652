"""``forecast.png``: a fixed soil-moisture scale per store, the served anomaly (centred on 0)
and drought class (all six classes in the legend) when a version serves them, basin names on
the maps and a title naming model and version. Tiny synthetic store, hand-made served products."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from soilcast.contract import ANOMALY, BASIN_MEAN, DROUGHT_CLASS, PERCENTILE, drought_class
from soilcast.data.store import open_tensors
from soilcast.serving.forecast import add_served_products, basin_table, climatology_of, forecast_dataset
from soilcast.serving.forecast_figures import (
    basin_climate_range,
    basin_weights,
    forecast_figure,
    plot_forecast,
    soil_moisture_limits,
    weighted_mean,
)

LEADS = [1, 2, 3]


def _forecast(cfg, t, init: dt.date, served: bool):
    """(ds, table, climate) of a forecast from ``init`` that is the store's own next days,
    with (``served``) or without the served products."""
    i = t.time.get_loc(pd.Timestamp(init))
    y = np.asarray(t.Y[i + 1 : i + 1 + len(LEADS)], np.float64)[..., 0]
    valid = [init + dt.timedelta(days=k) for k in LEADS]
    clim = climatology_of(cfg, t, valid)
    products = None
    if served:
        rng = np.random.default_rng(0)
        pct = np.where(np.isfinite(y), rng.uniform(0, 100, y.shape), np.nan)
        ids = list(basin_weights(t))
        products = {ANOMALY: y - clim, PERCENTILE: pct, DROUGHT_CLASS: drought_class(pct), "basins": ids,
                    BASIN_MEAN: np.array([[weighted_mean(y[k], w) for w in basin_weights(t).values()]
                                          for k in range(len(LEADS))])}
    ds = forecast_dataset(y, t, init, LEADS, 7, "gru", clim)
    if served:
        add_served_products(ds, products)
    return ds, basin_table(y, t, init, LEADS, clim, products), basin_climate_range(cfg, t, valid)


def _maps(fig, row: str) -> list:
    return [ax for ax in fig.axes if ax.get_label() == row]


@pytest.fixture
def store(tiny_cfg, synthetic_store):
    return tiny_cfg, open_tensors(synthetic_store)


def test_soil_moisture_scale_is_the_training_years_range_rounded_out(store):
    cfg, t = store
    lo, hi = soil_moisture_limits(cfg, t)
    years = (t.time.year >= cfg.split.train_years[0]) & (t.time.year <= cfg.split.train_years[1])
    y = np.asarray(t.Y[np.flatnonzero(years)], np.float64)[..., 0][:, t.mask.astype(bool)]
    assert lo <= np.nanmin(y) < lo + 0.05 and hi - 0.05 < np.nanmax(y) <= hi
    assert round(lo / 0.05, 6).is_integer() and round(hi / 0.05, 6).is_integer()


def test_two_init_days_share_the_colour_scale_and_served_rows_show(store, tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    cfg, t = store
    limits = soil_moisture_limits(cfg, t)
    clims, spans = [], []
    for init in (dt.date(2012, 1, 10), dt.date(2012, 7, 10)):
        ds, table, climate = _forecast(cfg, t, init, served=True)
        fig = forecast_figure(ds, table, climate, t.basin_id, None, cfg.target.colormap, limits)
        sm = _maps(fig, "soil_moisture")
        assert len(sm) == len(LEADS) and len(_maps(fig, "anomaly")) == len(LEADS)
        clims.append({ax.collections[0].get_clim() for ax in sm})
        finite = ds["soil_moisture"].values[np.isfinite(ds["soil_moisture"].values)]
        spans.append((finite.min(), finite.max()))
        norm = _maps(fig, "anomaly")[0].collections[0].norm
        assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0 and norm.vmin == -norm.vmax
        legend = _maps(fig, "drought_class")[-1].get_legend()
        labels = [x.get_text().split()[0] for x in legend.get_texts()]
        assert labels == ["none", "D0", "D1", "D2", "D3", "D4"]
        texts = [x.get_text() for ax in sm for x in ax.texts]
        assert texts == ["West", "East"] and [x.get_text() for x in sm[0].texts] == texts  # once, on the first map
        title = fig.subfigs[0]._suptitle.get_text()
        assert "model gru version 7" in title and f"init {init}" in title
        plt.close(fig)
    assert len(clims[0]) == 1 and clims[0] == clims[1] == {limits}  # the same fixed scale both days
    assert spans[0] != spans[1]  # although the days' own ranges differ


def test_a_version_without_products_keeps_the_soil_moisture_row(store, tmp_path):
    import matplotlib.pyplot as plt

    cfg, t = store
    ds, table, climate = _forecast(cfg, t, dt.date(2012, 7, 10), served=False)
    fig = forecast_figure(ds, table, climate, t.basin_id, None, cfg.target.colormap, soil_moisture_limits(cfg, t))
    assert len(_maps(fig, "soil_moisture")) == len(LEADS)
    assert not _maps(fig, "anomaly") and not _maps(fig, "drought_class")
    plt.close(fig)
    plot_forecast(ds, table, climate, t.basin_id, tmp_path / "f.png", None, cfg.target.colormap)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_forecast_takes_the_scale_from_the_store(store, tmp_path, monkeypatch):
    """write_products hands plot_forecast the (cfg, tensors): the PNG is drawn on the store's scale."""
    import soilcast.serving.forecast_figures as figures

    cfg, t = store
    ds, table, climate = _forecast(cfg, t, dt.date(2012, 7, 10), served=True)
    drawn = []
    real = figures.forecast_figure
    monkeypatch.setattr(figures, "forecast_figure", lambda *a: drawn.append(a[-1]) or real(*a))
    plot_forecast(ds, table, climate, t.basin_id, tmp_path / "f.png", None, cfg.target.colormap, store=(cfg, t))
    assert drawn == [soil_moisture_limits(cfg, t)] and (tmp_path / "f.png").is_file()


def test_the_legend_names_the_classes_as_the_netcdf_flags_do():
    from soilcast.serving.forecast import DROUGHT_FLAGS
    from soilcast.serving.forecast_figures import DROUGHT_NAMES, drought_legend

    assert " ".join(DROUGHT_NAMES) == DROUGHT_FLAGS
    assert [c for c, _, _ in drought_legend()] == [-1, 0, 1, 2, 3, 4]
