"""Helpers for tests of the daily operation: forecasts to archive without a server, and a
small operational world (a store, two labelled stand-in versions) to run ``daily`` in.

The forecasts built here are real :class:`soilcast.serving.forecast.Issued` objects holding
fields the test chooses (the observation itself, persistence, an offset), so verification
scores can be checked exactly.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def issued(tensors: Any, init: str, field_of: Any, *, label: str = "stable", version: int = 1,
           leads: list[int] | None = None, window: str = "w") -> Any:
    """An Issued forecast from ``init`` whose lead-k field is ``field_of(valid_index, init_index)``
    ([H, W]; NaN for a valid day beyond the store); point forecast (no products), past weather only."""
    from soilcast.serving.forecast import Issued, LeadWeather

    leads = leads or [1, 2, 3]
    t0 = int(tensors.time.get_loc(pd.Timestamp(init)))
    nan = np.full(tensors.mask.shape, np.nan, np.float32)  # a valid day beyond the store
    y = np.stack([np.asarray(field_of(t0 + k, t0), np.float32) if t0 + k < len(tensors.time) else nan
                  for k in leads])
    day = dt.date.fromisoformat(init)
    return Issued(day, leads, [day + dt.timedelta(days=k) for k in leads], y, None, {"model": "standin"},
                  version, label, LeadWeather(None), window)


def operational_world(prepared: Any, root: Path, offsets: tuple[float, float] = (0.0, 0.01)) -> Any:
    """A config under ``root`` with a copy of ``prepared``'s store and two probabilistic
    stand-in versions (products from the store's tables), labelled stable=1 and canary=2."""
    from soilcast.data.store import open_tensors
    from soilcast.export.products import product_tables
    from soilcast.repository.labels import write_labels
    from soilcast.testing.config import tiny_config
    from soilcast.testing.standin import write_standin

    cfg = tiny_config(root)
    shutil.copytree(prepared.paths.processed, cfg.paths.processed)
    t = open_tensors(cfg.paths.processed)
    tables = product_tables(cfg, t)
    for version, offset in enumerate(offsets, 1):
        write_standin(Path(cfg.paths.models_dir) / str(version), seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon,
                      mask=t.mask, variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                      offset=offset, leads=list(cfg.window.leads), quantile_levels=LEVELS, tables=tables,
                      basin_names=t.attrs["basin_names"])
    write_labels(cfg.paths.models_dir, {"stable": 1, "canary": 2}, cfg.serving.model_name)
    return cfg


def deliver(prepared: Any, out: Path, first: dt.date, last: dt.date | None = None) -> dict[dt.date, Path]:
    """Daily delivery folders ``out/<day>/`` for ``first``..``last`` (continuing ``prepared``'s demo)."""
    from soilcast.demo.delivery import daily_deliveries

    return daily_deliveries(prepared, out, first, last or first)
