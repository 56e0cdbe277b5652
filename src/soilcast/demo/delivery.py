"""Daily demo deliveries: one folder per day holding just that day's files, as an operational
feed brings them (``soilcast demo-delivery OUT --per-day``), to drive ``soilcast daily``.

The demo generator writes whole years (:func:`soilcast.demo.generate.generate_delivery`);
here each year file is cut into the day each value describes: an accumulated variable
stamped at the end of its period (``accumulation_stamp: end_of_period``) is cut at the next
day's 00 UTC stamp, exactly the rule the readers undo (:func:`soilcast.data.readers.valid_days`),
so ``ingest`` of ``OUT/<day>/`` adds that day and nothing else.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd

from soilcast.config import Config


def _time_name(ds: object) -> str:
    from soilcast.data.readers import TIME_NAMES

    return next(n for n in TIME_NAMES if n in ds.dims)  # type: ignore[attr-defined]


def split_by_day(cfg: Config, year_dir: Path, out_dir: Path, first: dt.date, last: dt.date) -> dict[dt.date, Path]:
    """Cut the year files under ``year_dir`` into ``out_dir/<day>/<folder>/<var>_<day>.nc``."""
    from soilcast.data.readers import accumulation_shift, all_specs, open_dataset, source_relpath

    days = pd.date_range(first, last, freq="D")
    folders = {d.date(): Path(out_dir) / str(d.date()) for d in days}
    for spec in all_specs(cfg):
        shift = pd.Timedelta(days=accumulation_shift(cfg, spec))
        for year in range(first.year, last.year + 2):  # a last day's end-of-period stamp is next year's
            path = Path(year_dir) / source_relpath(cfg, spec, year)
            if not path.is_file():
                continue
            with open_dataset(path) as ds:
                name = _time_name(ds)
                stamps = pd.DatetimeIndex(ds[name].values)
                for day in days:
                    at = stamps == day + shift
                    if at.any():
                        rel = source_relpath(cfg, spec, year)
                        dest = folders[day.date()] / rel.parent / f"{spec.source_name}_{day.date()}.nc"
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        ds.isel({name: at.nonzero()[0]}).to_netcdf(dest)
    return folders


def daily_deliveries(cfg: Config, out_dir: Path, first: dt.date, last: dt.date) -> dict[dt.date, Path]:
    """One delivery folder per day ``first``..``last`` (``out_dir/<day>/``), continuing the demo."""
    from soilcast.demo.generate import generate_delivery

    with tempfile.TemporaryDirectory(prefix="demo_years_") as tmp:
        generate_delivery(cfg, Path(tmp), first, last)
        return split_by_day(cfg, Path(tmp), out_dir, first, last)
