"""Tiny hand-made test forecasts and scores for the figure tests: a 5x6 grid with two basins,
test inits from late February to mid October 2013 (a dry and a wet season), leads 1 and 3,
two networks and the benchmark references. ``net_b`` is the better network on VALIDATION,
``net_a`` on test, so a figure that chose on test would show the wrong one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from soilcast.records import Leaderboard

LEADS = (1, 3)
LAT, LON = np.linspace(20.0, 24.0, 5), np.linspace(75.0, 80.0, 6)
NETWORKS = ("net_a", "net_b")
REFERENCES = ("persistence", "climatology", "damped_persistence")
BASINS = {1: "West", 2: "East"}
VAL_MSE = {"net_a": 4e-4, "net_b": 3e-4, "persistence": 6e-4, "climatology": 9e-4, "damped_persistence": 5e-4}


def grid() -> tuple[np.ndarray, np.ndarray]:
    """mask [5, 6] (two corners outside) and basin_id (West: lon < 78, East: the rest)."""
    mask = np.ones((LAT.size, LON.size), bool)
    mask[0, 0] = mask[-1, -1] = False
    basin_id = np.where(LON[None, :] < 78.0, 1, 2) * mask
    return mask, basin_id.astype(np.int32)


def fields(seed: int = 0) -> dict[str, np.ndarray]:
    """obs and every model's pred [N, K, H, W] (NaN outside the mask), init times."""
    rng = np.random.default_rng(seed)
    init = pd.date_range("2013-02-20", "2013-10-15", freq="D")
    mask, _ = grid()
    day = np.arange(init.size + max(LEADS) + 1)
    truth = 0.22 + 0.12 * np.sin(2 * np.pi * (day - 120) / 365)[:, None, None] + 0.01 * LAT[None, :, None] / 24
    truth = truth + 0.01 * rng.standard_normal((day.size, LAT.size, LON.size))
    obs = np.stack([truth[np.arange(init.size) + k] for k in LEADS], axis=1)
    now = truth[np.arange(init.size)][:, None]
    out = {"obs": obs, "init": init,
           "persistence": np.broadcast_to(now, obs.shape).copy(),
           "climatology": np.full(obs.shape, float(np.mean(truth))),
           "damped_persistence": 0.5 * now + 0.5 * float(np.mean(truth)) + 0 * obs,
           "net_a": obs + 0.004 * rng.standard_normal(obs.shape),
           "net_b": obs + 0.006 * rng.standard_normal(obs.shape)}
    for key in out:
        if key != "init":
            out[key] = np.where(mask, out[key], np.nan).astype(np.float32)
    return out


def forecasts_of(data: dict[str, np.ndarray]) -> dict[str, object]:
    from soilcast.ml.predict import Forecasts

    mask, basin_id = grid()
    return {n: Forecasts(pred=data[n], obs=data["obs"], init_time=data["init"], leads=LEADS, mask=mask, lat=LAT,
                         lon=LON, basin_id=basin_id, model=n) for n in NETWORKS + REFERENCES}


def mse_blocks(pred: np.ndarray, obs: np.ndarray, rows: np.ndarray | None = None) -> dict:
    """Per lead key {"mse": ...} over ``rows`` (default all) and the finite cells."""
    out = {}
    for k, lead in enumerate(LEADS):
        r = slice(None) if rows is None else rows[:, k]
        err = (pred[r, k].astype(np.float64) - obs[r, k]) ** 2
        out[str(lead)] = {"mse": float(np.nanmean(err)), "rmse": float(np.sqrt(np.nanmean(err)))}
    return out


def leaderboard_of(data: dict[str, np.ndarray], seasons: dict[str, list[int]]) -> Leaderboard:
    mask, basin_id = grid()
    init = data["init"]
    months = np.stack([(init + pd.Timedelta(days=k)).month for k in LEADS], axis=1)
    entries = {}
    for n in NETWORKS + REFERENCES:
        p, o = data[n], data["obs"]
        entries[n] = {
            "status": "ok", "kind": "network" if n in NETWORKS else "reference", "n_windows": init.size,
            "leads": list(LEADS), "init_period": [str(init[0].date()), str(init[-1].date())],
            "overall": mse_blocks(p, o),
            "seasons": {s: mse_blocks(p, o, np.isin(months, ms)) for s, ms in seasons.items()
                        if np.isin(months, ms).any()},
            "basins": {name: mse_blocks(np.where(basin_id == b, p, np.nan), o) for b, name in BASINS.items()},
            "val": {str(k): {"mse": VAL_MSE[n]} for k in LEADS},
        }
    return Leaderboard.from_json(entries, "test")


@pytest.fixture(scope="module")
def figure_inputs():
    """(forecasts, metrics, basins, cfg) as evaluate hands them to the figures."""
    from soilcast.config import load_config
    from tests.conftest import PARAMS

    cfg = load_config(PARAMS)
    data = fields()
    return forecasts_of(data), leaderboard_of(data, cfg.evaluation.seasons), dict(BASINS), cfg


@pytest.fixture
def captured(monkeypatch):
    """Figures saved through :func:`soilcast.style.save`, kept open by file name (closed at the end)."""
    from soilcast import style

    figs: dict[str, object] = {}
    real = style.save

    def keep(fig, path, figures=None):
        figs[path.name] = fig
        fig.canvas.draw()
        real(fig, path, figures)

    monkeypatch.setattr(style, "save", keep)
    yield figs
