"""``forecast.png``: soil moisture and the served anomaly on the fixed colour scales of params
``evaluation.figures`` (:mod:`soilcast.style`, the same for every init day; another config's
scales change them), the served drought class with all six classes in the legend, basin names on
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
    weighted_mean,
)
from soilcast.testing.config import tiny_config

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


def _clim(axes: list) -> set:
    """The (vmin, vmax) each map's mesh was drawn with."""
    return {tuple(float(v) for v in ax.collections[0].get_clim()) for ax in axes}


def test_two_init_days_share_the_configured_scales_and_served_rows_show(store):
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    cfg, t = store
    scales = cfg.evaluation.figures.scales
    spans = []
    for init in (dt.date(2012, 1, 10), dt.date(2012, 7, 10)):
        ds, table, climate = _forecast(cfg, t, init, served=True)
        fig = forecast_figure(ds, table, climate, t.basin_id, None, cfg)
        sm, anomaly = _maps(fig, "soil_moisture"), _maps(fig, "anomaly")
        assert len(sm) == len(LEADS) and len(anomaly) == len(LEADS)
        assert _clim(sm) == {tuple(scales.soil_moisture)}  # the same fixed scale both days
        assert sm[0].collections[0].get_cmap().name == cfg.target.colormap
        finite = ds["soil_moisture"].values[np.isfinite(ds["soil_moisture"].values)]
        spans.append((finite.min(), finite.max()))
        for ax in anomaly:
            norm = ax.collections[0].norm
            assert isinstance(norm, TwoSlopeNorm) and norm.vcenter == 0.0
            assert (norm.vmin, norm.vmax) == tuple(scales.anomaly)
        legend = _maps(fig, "drought_class")[-1].get_legend()
        labels = [x.get_text().split()[0] for x in legend.get_texts()]
        assert labels == ["none", "D0", "D1", "D2", "D3", "D4"]
        texts = [x.get_text() for ax in sm for x in ax.texts]
        assert texts == ["West", "East"] and [x.get_text() for x in sm[0].texts] == texts  # once, on the first map
        assert all(ax.collections[1].get_segments() for ax in sm)  # the basin outlines (cell edges, no basins file)
        title = fig.subfigs[0]._suptitle.get_text()
        assert "model gru version 7" in title and f"init {init}" in title
        plt.close(fig)
    assert spans[0] != spans[1]  # although the days' own ranges differ


def test_other_configured_scales_redraw_the_maps_with_arrows_past_them(store, tmp_path):
    """The limits come from params, not from the data: a narrower soil-moisture scale and a
    wider anomaly scale are drawn as configured, and the colour bar points past the ends the
    day's values cross."""
    import matplotlib.pyplot as plt

    cfg, t = store
    ds, table, climate = _forecast(cfg, t, dt.date(2012, 7, 10), served=True)
    finite = ds["soil_moisture"].values[np.isfinite(ds["soil_moisture"].values)]
    mid = round(float(np.median(finite)), 3)
    narrow = (mid - 0.01, mid + 0.01)  # inside the day's range: values run past both ends
    other = tiny_config(tmp_path, {"evaluation": {"figures": {"scales": {"soil_moisture": list(narrow),
                                                                         "anomaly": [-0.3, 0.2]}}}})
    assert tuple(other.evaluation.figures.scales.soil_moisture) != tuple(cfg.evaluation.figures.scales.soil_moisture)
    fig = forecast_figure(ds, table, climate, t.basin_id, None, other)
    sm, anomaly = _maps(fig, "soil_moisture"), _maps(fig, "anomaly")
    assert _clim(sm) == {narrow}
    assert sm[-1].collections[0].colorbar.extend == "both"
    norm = anomaly[0].collections[0].norm
    assert (norm.vmin, norm.vcenter, norm.vmax) == (-0.3, 0.0, 0.2)
    plt.close(fig)
    fig = forecast_figure(ds, table, climate, t.basin_id, None, cfg)  # the day fits params' 0-0.5
    assert _maps(fig, "soil_moisture")[-1].collections[0].colorbar.extend == "neither"
    plt.close(fig)


def test_a_version_without_products_keeps_the_soil_moisture_row(store, tmp_path):
    import matplotlib.pyplot as plt

    cfg, t = store
    ds, table, climate = _forecast(cfg, t, dt.date(2012, 7, 10), served=False)
    fig = forecast_figure(ds, table, climate, t.basin_id, None, cfg)
    assert len(_maps(fig, "soil_moisture")) == len(LEADS)
    assert _clim(_maps(fig, "soil_moisture")) == {tuple(cfg.evaluation.figures.scales.soil_moisture)}
    assert not _maps(fig, "anomaly") and not _maps(fig, "drought_class")
    plt.close(fig)


def test_plot_forecast_writes_the_png_at_the_configured_dpi(store, tmp_path):
    """write_products hands plot_forecast the cfg: the PNG is written (atomically, by
    style.save) at params evaluation.figures.dpi, so another dpi gives another size."""
    from PIL import Image

    cfg, t = store
    ds, table, climate = _forecast(cfg, t, dt.date(2012, 7, 10), served=True)
    sizes = []
    for dpi in (cfg.evaluation.figures.dpi, 2 * cfg.evaluation.figures.dpi):
        c = tiny_config(tmp_path, {"evaluation": {"figures": {"dpi": dpi}}})
        path = tmp_path / f"f{dpi}.png"
        plot_forecast(ds, table, climate, t.basin_id, path, None, c)
        assert path.read_bytes()[:4] == b"\x89PNG" and not list(tmp_path.glob(".*"))  # no temporary left
        with Image.open(path) as im:
            assert round(im.info["dpi"][0]) == dpi
            sizes.append(im.size)
    assert sizes[1][0] > 1.8 * sizes[0][0]


def test_the_legend_names_the_classes_as_the_netcdf_flags_do():
    from soilcast.serving.forecast import DROUGHT_FLAGS
    from soilcast.serving.forecast_figures import DROUGHT_NAMES, drought_legend

    assert " ".join(DROUGHT_NAMES) == DROUGHT_FLAGS
    assert [c for c, _, _ in drought_legend()] == [-1, 0, 1, 2, 3, 4]
