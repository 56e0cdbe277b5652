"""The demo's archive of weather forecasts, in GRIB2 as ECMWF open data publishes it.

``write_archive(cfg, out_dir)`` writes, for every init day (00 UTC) of the years
``demo.forecast_archive.years``, one forecast run on the demo met grid cut to the target grid
(``grid`` extent +- ``margin_deg``, like a user's area download), latitude descending (GRIB
``regular_ll`` scans north to south) and longitude in 0-360, into one file per month:
``<out_dir>/<sources.forecast.folder>/<YYYY-MM>.grib2`` holding that month's runs (like a
MARS retrieval). ``write_run(cfg, init, path)`` writes a single run (an operational "latest
run") with the same code, so its messages are byte-identical to the archive's.

A run covers the days init+0 .. init+max(window.leads) (00-24 UTC each). Its values are the
demo truth of those days (:func:`soilcast.demo.weather.daily_weather`, the same world the
demo's reanalysis files hold) with :func:`soilcast.forecast_error.perturb` applied (day d is
lead d; its own generator per run, ``[forecast_archive.seed, init ordinal]``; ``sd`` = each
variable's spread over the truth of the archive years, canonical units), clipped into each
variable's ``valid_range`` (raw files must pass the readers' checks). In the files:

* units are the params ``source_units`` (tp m, ssrd J m**-2, t2m K, sp Pa, ...): canonical
  values are converted back with the inverse of :func:`soilcast.data.readers.conversion`;
* accumulated variables (``accumulated: true``: tp, ssrd) are accumulated FROM THE RUN START
  as ECMWF writes them (productDefinitionTemplateNumber 8, stepType accum, startStep 0,
  endStep = step), at steps 0, step_hours, ..., 24 * (max lead + 1) (the last day's total
  closes at its end; step 0 holds 0). Within a day the day's total accrues at a constant rate;
* instantaneous variables at the steps inside the days (step_hours .. 24 * (max lead + 1) -
  step_hours, never step 0): the demo's truth is a daily mean, so every step inside a day
  carries that day's value;
* simple packing with ``bits_per_value`` bits, centre ecmf, dataTime 0000.

GRIB short names come from :data:`GRIB_SHORT_NAMES` (cfgrib reads ``2t`` back as ``t2m``, the
params ``source_name``). Deterministic: GRIB2 holds no timestamps, so two runs write
byte-identical files.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soilcast.config import Config, VariableSpec
from soilcast.data.readers import conversion
from soilcast.demo.geography import geography
from soilcast.demo.variables import MET_VARIABLES
from soilcast.demo.weather import daily_weather, draw_textures, draw_year
from soilcast.forecast_error import perturb, temporal_spread
from soilcast.io.atomic import atomic_path

log = logging.getLogger(__name__)

SAMPLE = "regular_ll_sfc_grib2"
CENTRE = "ecmf"
# params variable name -> GRIB shortName (cfgrib names the variables back t2m, d2m, u10, v10)
GRIB_SHORT_NAMES: dict[str, str] = {
    "tp": "tp", "t2m": "2t", "d2m": "2d", "u10": "10u", "v10": "10v", "ssrd": "ssrd", "sp": "sp",
    "tcc": "tcc",
}
ACCUM_TEMPLATE = 8  # product definition template: average/accumulation over an interval
INSTANT_TEMPLATE = 0
EPS = 1e-6


def _short_name(spec: VariableSpec) -> str:
    try:
        return GRIB_SHORT_NAMES[spec.name]
    except KeyError:
        raise ValueError(f"demo forecast archive: no GRIB short name for variable {spec.name!r} "
                         f"(known: {sorted(GRIB_SHORT_NAMES)}; add it to GRIB_SHORT_NAMES)") from None


def cutout_axes(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """The archive's grid: latitude DESCENDING, longitude 0-360, the demo met grid's points
    inside the target grid's extent +- ``margin_deg``."""
    met, grid, m = cfg.demo.met_grid, cfg.grid, cfg.demo.forecast_archive.margin_deg
    lats = np.array([y for y in met.lats if grid.lat_min - m - EPS <= y <= grid.lat_max + m + EPS])
    lons = np.array([x for x in met.lons if grid.lon_min - m - EPS <= x <= grid.lon_max + m + EPS])
    if lats.size < 2 or lons.size < 2:
        raise ValueError(f"demo forecast archive: demo.met_grid {met} holds fewer than 2x2 points "
                         f"inside grid +- {m} deg")
    return lats[::-1].astype(np.float64), np.mod(lons, 360.0).astype(np.float64)


def steps(cfg: Config, spec: VariableSpec) -> list[int]:
    """The steps (hours) written for ``spec``: see the module docstring."""
    sh = cfg.demo.forecast_archive.step_hours
    end = 24 * (cfg.window.max_lead + 1)
    first = 0 if spec.accumulated else sh
    last = end if spec.accumulated else end - 1
    return list(range(first, last + 1, sh))


@dataclass
class _World:
    """The demo world on the archive's grid and the GRIB templates of every message."""

    cfg: Config
    lat: np.ndarray
    lon: np.ndarray
    geo: object  # soilcast.demo.geography.Geography of the grid
    textures: object  # soilcast.demo.weather.Textures (the demo's weather noise)
    sd: np.ndarray  # [C] canonical spread of the truth over the archive years
    templates: dict[tuple[str, int], int]  # (variable, step) -> eccodes handle

    def close(self) -> None:
        import eccodes

        for h in self.templates.values():
            eccodes.codes_release(h)
        self.templates.clear()


def _truth(cfg: Config, geo, textures, days: np.ndarray) -> np.ndarray:
    """[T, H, W, C] canonical truth of ``days`` on ``geo``'s grid."""
    years = days.astype("datetime64[Y]").astype(int) + 1970
    draws = {y: draw_year(cfg.demo.seed, y) for y in range(int(years.min()) - 1, int(years.max()) + 1)}
    w = daily_weather(geo, days, textures, draws)
    out = np.empty((len(days), *geo.lat.shape, len(cfg.variables)), dtype=np.float32)
    for c, spec in enumerate(cfg.variables):
        if spec.name not in MET_VARIABLES:
            raise ValueError(f"demo forecast archive: the demo cannot synthesise {spec.name!r}")
        scale, offset = conversion(spec)
        out[..., c] = MET_VARIABLES[spec.name].values(w) * scale + offset
    return out


def _template(cfg: Config, spec: VariableSpec, step: int, lat: np.ndarray, lon: np.ndarray) -> int:
    import eccodes

    h = eccodes.codes_grib_new_from_samples(SAMPLE)
    grid = {
        "Ni": lon.size, "Nj": lat.size,
        "latitudeOfFirstGridPointInDegrees": float(lat[0]), "latitudeOfLastGridPointInDegrees": float(lat[-1]),
        "longitudeOfFirstGridPointInDegrees": float(lon[0]), "longitudeOfLastGridPointInDegrees": float(lon[-1]),
        "iDirectionIncrementInDegrees": float(abs(lon[1] - lon[0])),
        "jDirectionIncrementInDegrees": float(abs(lat[1] - lat[0])),
        "iScansNegatively": 0, "jScansPositively": 0,
    }
    for key, value in grid.items():
        eccodes.codes_set(h, key, value)
    eccodes.codes_set(h, "centre", CENTRE)
    eccodes.codes_set(h, "typeOfGeneratingProcess", 2)  # forecast
    eccodes.codes_set(h, "dataTime", 0)
    # the template number first: setting shortName then fills in the matching statistics keys
    eccodes.codes_set(h, "productDefinitionTemplateNumber", ACCUM_TEMPLATE if spec.accumulated else INSTANT_TEMPLATE)
    eccodes.codes_set(h, "shortName", _short_name(spec))
    if spec.accumulated:
        eccodes.codes_set(h, "stepType", "accum")
        eccodes.codes_set(h, "startStep", 0)
        eccodes.codes_set(h, "endStep", step)
    else:
        eccodes.codes_set(h, "step", step)
    eccodes.codes_set(h, "bitsPerValue", cfg.demo.forecast_archive.bits_per_value)
    return h


def _world(cfg: Config) -> _World:
    fa = cfg.demo.forecast_archive
    lat, lon = cutout_axes(cfg)
    geo = geography(lat, lon)
    textures = draw_textures(cfg.demo.seed)
    days = np.arange(np.datetime64(dt.date(fa.years[0], 1, 1)), np.datetime64(dt.date(fa.years[1], 12, 31)) + 1)
    truth = _truth(cfg, geo, textures, days)
    sd = temporal_spread(truth)
    templates = {(s.name, k): _template(cfg, s, k, lat, lon) for s in cfg.variables for k in steps(cfg, s)}
    return _World(cfg, lat, lon, geo, textures, sd, templates)


def _forecast(world: _World, init: dt.date, truth: np.ndarray) -> np.ndarray:
    """[K+1, H, W, C]: the perturbed truth of days init+0 .. init+K (day d = lead d)."""
    cfg = world.cfg
    rng = np.random.default_rng([cfg.demo.forecast_archive.seed, init.toordinal()])
    leads = list(range(truth.shape[0]))
    fc = perturb(truth[None], cfg.variables, leads, cfg.forecast_error, rng, world.sd)[0]
    for c, spec in enumerate(cfg.variables):  # raw files hold values inside valid_range (source units)
        scale, offset = conversion(spec)
        lo, hi = sorted(v * scale + offset for v in spec.valid_range)
        np.clip(fc[..., c], lo, hi, out=fc[..., c])
    return fc


def _messages(world: _World, init: dt.date, fc: np.ndarray) -> Iterator[bytes]:
    """The GRIB2 messages of one run (variables in params order, steps ascending)."""
    import eccodes

    date = int(init.strftime("%Y%m%d"))
    for c, spec in enumerate(world.cfg.variables):
        scale, offset = conversion(spec)
        source = (fc[..., c].astype(np.float64) - offset) / scale  # [K+1, H, W], day totals when accumulated
        if spec.accumulated:
            before = np.concatenate([np.zeros_like(source[:1]), np.cumsum(source, axis=0)])  # at each day's start
        for step in steps(world.cfg, spec):
            day, hour = divmod(step, 24)
            if spec.accumulated:
                values = before[day] if hour == 0 else before[day] + source[day] * (hour / 24.0)
            else:
                values = source[day]
            # the template itself is reused (a clone costs more than the encoding): every key
            # that differs between runs is set again, bitsPerValue too (a constant field, step
            # 0's zeros or a dry day, is packed in 0 bits and would leave it at 0)
            h = world.templates[(spec.name, step)]
            eccodes.codes_set(h, "dataDate", date)
            eccodes.codes_set(h, "bitsPerValue", world.cfg.demo.forecast_archive.bits_per_value)
            eccodes.codes_set_values(h, np.ascontiguousarray(values, dtype=np.float64).ravel())
            yield eccodes.codes_get_message(h)


def _run_bytes(world: _World, init: dt.date, truth: np.ndarray) -> bytes:
    return b"".join(_messages(world, init, _forecast(world, init, truth)))


def _days(first: dt.date, n: int) -> np.ndarray:
    return np.arange(n) + np.datetime64(first, "D")


def write_run(cfg: Config, init: dt.date, path: Path) -> Path:
    """Write the single run of ``init`` (00 UTC) to ``path`` (atomically); returns it."""
    world = _world(cfg)
    try:
        K = cfg.window.max_lead
        truth = _truth(cfg, world.geo, world.textures, _days(init, K + 1))
        data = _run_bytes(world, init, truth)
    finally:
        world.close()
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def archive_folder(cfg: Config, out_dir: Path) -> Path:
    if cfg.sources.forecast is None:
        raise ValueError("demo forecast archive: sources.forecast is null (no folder to write the runs to)")
    return Path(out_dir) / cfg.sources.forecast.folder


def write_archive(cfg: Config, out_dir: Path, inits: Sequence[dt.date] | None = None) -> list[Path]:
    """Write every month's runs of ``demo.forecast_archive.years`` under ``out_dir``
    (``<sources.forecast.folder>/<YYYY-MM>.grib2``); returns the files in order.

    ``inits``: only these init days (tests), still one file per month they fall in.
    """
    fa = cfg.demo.forecast_archive
    if inits is None:
        first, last = dt.date(fa.years[0], 1, 1), dt.date(fa.years[1], 12, 31)
        inits = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    months: dict[tuple[int, int], list[dt.date]] = {}
    for day in sorted(set(inits)):
        months.setdefault((day.year, day.month), []).append(day)
    folder = archive_folder(cfg, out_dir)
    K = cfg.window.max_lead
    world = _world(cfg)
    out: list[Path] = []
    try:
        for (year, month), days in months.items():
            n = (days[-1] - days[0]).days + 1
            truth = _truth(cfg, world.geo, world.textures, _days(days[0], n + K))
            path = folder / f"{year:04d}-{month:02d}.grib2"
            with atomic_path(path) as tmp, open(tmp, "wb") as fh:
                for day in days:
                    i = (day - days[0]).days
                    fh.write(_run_bytes(world, day, truth[i : i + K + 1]))
            out.append(path)
            log.info("demo forecast archive: wrote %s (%d runs)", path, len(days))
    finally:
        world.close()
    return out
