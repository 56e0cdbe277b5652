"""Daily weather of the demo world, as analytic functions of (latitude, longitude, day).

The ingredients, each a caricature of a real South-Asian process:

* **Monsoon envelope.** Every place has an onset and a withdrawal date. Onset is ~1 June over
  Kerala and advances to the north-west (~mid July over the Thar); withdrawal starts in the
  north-west in September. Each year shifts both dates and scales the monsoon's strength.
* **Intraseasonal oscillation.** Active and break spells propagate northward (~0.8 deg/day,
  ~42-day period), like the boreal summer intraseasonal oscillation.
* **Moving systems.** Monsoon lows/depressions form over the head of the Bay of Bengal and
  travel west-north-west across central India; western disturbances cross the north from the
  west in winter; a few Bay cyclones strike the east coast around the monsoon's ends. Each
  carries a rain shield (offset to its south-west), a cyclonic vortex and a pressure low, so
  a cell's rain depends on its neighbours' and its upwind past.
* **Weather texture.** Smooth random waves (a sum of drifting Fourier modes) make rain
  intermittent and add synoptic noise; being analytic, they are identical on every grid.
* **Coupling.** Cloud follows the monsoon and the rain; cloud cuts radiation and cools the
  air; rain and the monsoon's moist air raise the dewpoint; winds turn from north-easterly
  in winter to south-westerly in the monsoon; pressure follows elevation, the summer heat
  low and the systems.

Time ``t`` is in days since 1970-01-01. Results are in physical units (rain mm/day,
radiation W m-2 daily mean, temperatures K, wind m s-1, pressure Pa); the writer converts to
ERA5's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soilcast.demo.geography import Geography, sigmoid

DAYS_PER_YEAR = 365.25
SOLAR_CONSTANT = 1367.0  # W m-2
DRIZZLE_MM = 0.1  # daily totals below this are reported as dry
BLOCK_DAYS = 32  # days evaluated at once (speed only; results do not depend on it)

# Monsoon calendar (day of year) and its geometry: later to the north and to the west.
ONSET_KERALA_DOY = 152.0  # 1 June
ONSET_PER_DEG_NORTH, ONSET_PER_DEG_WEST = 1.9, 1.2
WITHDRAWAL_KERALA_DOY = 290.0
WITHDRAWAL_PER_DEG_NORTH, WITHDRAWAL_PER_DEG_WEST = 1.6, 1.2
KERALA_LAT, KERALA_LON = 8.5, 76.5
MONSOON_PEAK_DOY = 210.0  # the monsoon is most vigorous in late July / August

# Intraseasonal (BSISO-like) active/break spells.
ISO_PERIOD_DAYS, ISO_WAVELENGTH_DEG, ISO_AMPLITUDE = 42.0, 35.0, 0.55


def _logistic_norm(spread: float, power: float) -> float:
    """E[max(0, 1 + spread*n)**power] for a standard normal n (Gauss-Hermite quadrature)."""
    x, w = np.polynomial.hermite_e.hermegauss(120)
    return float(np.sum(w * np.maximum(0.0, 1.0 + spread * x) ** power) / np.sqrt(2.0 * np.pi))


RAIN_SPREAD, RAIN_POWER = 1.25, 1.5
RAIN_NORM = _logistic_norm(RAIN_SPREAD, RAIN_POWER)


# --------------------------------------------------------------------------- random draws


@dataclass(frozen=True)
class Texture:
    """A smooth, unit-variance random field: a sum of plane waves drifting in time.

    Separable in (t, lat, lon), so a year on a grid costs one small complex matrix product.
    """

    kx: np.ndarray  # rad per degree longitude
    ky: np.ndarray  # rad per degree latitude
    omega: np.ndarray  # rad per day (includes the drift)
    phase: np.ndarray

    def __call__(self, t: np.ndarray, lat1d: np.ndarray, lon1d: np.ndarray) -> np.ndarray:
        et = np.exp(1j * (self.phase[:, None] - self.omega[:, None] * t[None, :]))  # K,T
        ey = np.exp(1j * self.ky[:, None] * lat1d[None, :])  # K,H
        ex = np.exp(1j * self.kx[:, None] * lon1d[None, :])  # K,W
        k = len(self.kx)
        a = (et[:, :, None] * ey[:, None, :]).reshape(k, -1)  # K, T*H
        field = (a.T @ ex).real.reshape(len(t), len(lat1d), len(lon1d))
        return field * np.sqrt(2.0 / k)


def make_texture(
    rng: np.random.Generator,
    n_modes: int,
    wavelength_deg: tuple[float, float],
    period_days: tuple[float, float],
    drift_deg_per_day: tuple[float, float],
) -> Texture:
    wavelength = rng.uniform(*wavelength_deg, n_modes)
    direction = rng.uniform(0.0, 2.0 * np.pi, n_modes)
    k = 2.0 * np.pi / wavelength
    kx, ky = k * np.cos(direction), k * np.sin(direction)
    omega = 2.0 * np.pi / rng.uniform(*period_days, n_modes) * rng.choice([-1.0, 1.0], n_modes)
    omega = omega + kx * drift_deg_per_day[0] + ky * drift_deg_per_day[1]
    return Texture(kx=kx, ky=ky, omega=omega, phase=rng.uniform(0.0, 2.0 * np.pi, n_modes))


@dataclass(frozen=True)
class Textures:
    rain: Texture  # also drives cloud noise: clouds and rain go together
    temperature: Texture
    dewpoint: Texture
    u: Texture
    v: Texture
    pressure: Texture


def draw_textures(seed: int) -> Textures:
    """The period's weather noise; fixed by the seed, continuous across years."""
    rng = np.random.default_rng([seed, 0])
    synoptic = dict(wavelength_deg=(4.0, 14.0), period_days=(3.0, 10.0), drift_deg_per_day=(-1.0, 0.3))
    large = dict(wavelength_deg=(10.0, 30.0), period_days=(6.0, 20.0), drift_deg_per_day=(1.0, 0.0))
    return Textures(
        rain=make_texture(rng, 24, **synoptic),
        temperature=make_texture(rng, 10, **large),
        dewpoint=make_texture(rng, 10, **large),
        u=make_texture(rng, 10, **large),
        v=make_texture(rng, 10, **large),
        pressure=make_texture(rng, 10, **large),
    )


@dataclass(frozen=True)
class Systems:
    """Moving weather systems; every field is an array with one entry per system."""

    t0: np.ndarray  # genesis, days since 1970-01-01
    life: np.ndarray  # days
    lat0: np.ndarray
    lon0: np.ndarray
    vlat: np.ndarray  # deg/day
    vlon: np.ndarray  # deg/day
    rain: np.ndarray  # peak rain rate, mm/day
    radius: np.ndarray  # deg
    wind: np.ndarray  # peak tangential wind, m/s
    dp: np.ndarray  # central pressure deficit, Pa
    rain_dlat: np.ndarray  # rain shield offset from the centre, deg
    rain_dlon: np.ndarray

    @staticmethod
    def concat(parts: list["Systems"]) -> "Systems":
        names = Systems.__dataclass_fields__
        return Systems(**{n: np.concatenate([getattr(p, n) for p in parts]) for n in names})


def _systems(
    rng: np.random.Generator, jan1: float, n: int, doy_windows: list[tuple[float, float]], **ranges: tuple[float, float]
) -> Systems:
    """``n`` systems born uniformly inside the day-of-year windows; other fields uniform in ranges."""
    lengths = np.array([b - a for a, b in doy_windows])
    which = rng.choice(len(doy_windows), n, p=lengths / lengths.sum())
    start = np.array([doy_windows[i][0] for i in which]) + rng.uniform(0.0, 1.0, n) * lengths[which]
    fields = {name: rng.uniform(lo, hi, n) for name, (lo, hi) in ranges.items()}
    return Systems(t0=jan1 + start - 1.0, **fields)


@dataclass(frozen=True)
class YearDraws:
    """What makes one year's monsoon different from another's."""

    year: int
    onset_shift: float  # days (positive: late onset)
    withdrawal_shift: float
    strength: float  # multiplies the monsoon's background rain
    iso_phase: float
    systems: Systems


def draw_year(seed: int, year: int) -> YearDraws:
    """The year's random draws, from a stream of its own (independent of the period)."""
    rng = np.random.default_rng([seed, 1, year])
    jan1 = float((np.datetime64(f"{year}-01-01") - np.datetime64("1970-01-01")).astype(int))
    onset = float(np.clip(rng.normal(0.0, 6.0), -14.0, 14.0))
    withdrawal = float(np.clip(rng.normal(0.0, 8.0), -18.0, 18.0))
    strength = float(np.clip(rng.normal(1.0, 0.12), 0.7, 1.3))
    iso_phase = float(rng.uniform(0.0, 2.0 * np.pi))
    lows = _systems(
        rng, jan1, int(rng.poisson(14)), [(ONSET_KERALA_DOY + onset + 8.0, 268.0 + withdrawal)],
        life=(3.0, 7.0), lat0=(18.0, 22.5), lon0=(86.0, 91.0), vlat=(0.1, 0.6), vlon=(-3.0, -1.5),
        rain=(20.0, 55.0), radius=(2.5, 4.0), wind=(5.0, 11.0), dp=(300.0, 900.0),
        rain_dlat=(-1.8, -0.8), rain_dlon=(-1.0, 0.0),
    )
    western = _systems(
        rng, jan1, int(rng.poisson(10)), [(1.0, 105.0), (320.0, 366.0)],
        life=(3.0, 6.0), lat0=(29.0, 36.0), lon0=(58.0, 64.0), vlat=(-0.5, 0.3), vlon=(3.0, 6.0),
        rain=(4.0, 14.0), radius=(3.0, 5.0), wind=(3.0, 7.0), dp=(200.0, 500.0),
        rain_dlat=(-1.0, 0.0), rain_dlon=(0.0, 1.5),
    )
    cyclones = _systems(
        rng, jan1, int(rng.poisson(2)), [(125.0, 150.0), (283.0, 345.0)],
        life=(4.0, 7.0), lat0=(10.0, 15.0), lon0=(86.0, 92.0), vlat=(0.3, 1.2), vlon=(-2.5, -1.0),
        rain=(40.0, 90.0), radius=(2.0, 3.0), wind=(12.0, 25.0), dp=(1000.0, 3000.0),
        rain_dlat=(-0.5, 0.5), rain_dlon=(-0.5, 0.5),
    )
    return YearDraws(year, onset, withdrawal, strength, iso_phase, Systems.concat([lows, western, cyclones]))


# --------------------------------------------------------------------------- the fields


@dataclass(frozen=True)
class Weather:
    """Daily fields [T, H, W] in physical units."""

    precip: np.ndarray  # mm/day (day total)
    t2m: np.ndarray  # K, daily mean
    d2m: np.ndarray  # K, daily mean
    u10: np.ndarray  # m/s
    v10: np.ndarray  # m/s
    ssrd: np.ndarray  # W m-2, daily mean
    sp: np.ndarray  # Pa
    cloud: np.ndarray  # fraction


@dataclass(frozen=True)
class _Calendar:
    t: np.ndarray  # days since 1970-01-01, float
    doy: np.ndarray  # day of year, float
    onset_shift: np.ndarray
    withdrawal_shift: np.ndarray
    strength: np.ndarray
    iso_phase: np.ndarray


def _calendar(days: np.ndarray, draws: dict[int, YearDraws]) -> _Calendar:
    days = np.asarray(days, dtype="datetime64[D]")
    years = days.astype("datetime64[Y]").astype(int) + 1970
    doy = (days - days.astype("datetime64[Y]").astype("datetime64[D]")).astype(int) + 1.0
    try:
        per_day = [draws[int(y)] for y in years]
    except KeyError as err:
        raise ValueError(f"demo weather: no random draws for year {err.args[0]}") from None
    return _Calendar(
        t=days.astype(int).astype(float),
        doy=doy,
        onset_shift=np.array([d.onset_shift for d in per_day]),
        withdrawal_shift=np.array([d.withdrawal_shift for d in per_day]),
        strength=np.array([d.strength for d in per_day]),
        iso_phase=np.array([d.iso_phase for d in per_day]),
    )


def _col(x: np.ndarray) -> np.ndarray:
    return x[:, None, None]


def onset_doy(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Climatological onset: ~1 June over Kerala, ~mid July over the north-west."""
    doy = ONSET_KERALA_DOY + ONSET_PER_DEG_NORTH * (lat - KERALA_LAT) + ONSET_PER_DEG_WEST * (KERALA_LON - lon)
    return np.clip(doy, 135.0, 200.0)


def withdrawal_doy(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Climatological withdrawal: mid September in the north-west, October in the south-east."""
    doy = (
        WITHDRAWAL_KERALA_DOY
        - WITHDRAWAL_PER_DEG_NORTH * (lat - KERALA_LAT)
        - WITHDRAWAL_PER_DEG_WEST * (KERALA_LON - lon)
    )
    return np.clip(doy, 245.0, 300.0)


def monsoon_envelope(geo: Geography, cal: _Calendar) -> np.ndarray:
    """Local monsoon activity in [0, 1]: on after the local onset, off after withdrawal."""
    on = onset_doy(geo.lat, geo.lon)[None] + _col(cal.onset_shift)
    off = withdrawal_doy(geo.lat, geo.lon)[None] + _col(cal.withdrawal_shift)
    doy = _col(cal.doy)
    return sigmoid((doy - on) / 2.5) * sigmoid((off - doy) / 4.0)


def large_scale_monsoon(cal: _Calendar) -> np.ndarray:
    """Basin-wide circulation index [T] used for the wind reversal."""
    on = ONSET_KERALA_DOY + cal.onset_shift
    off = 280.0 + cal.withdrawal_shift
    return sigmoid((cal.doy - on) / 6.0) * sigmoid((off - cal.doy) / 8.0)


def _season(doy: np.ndarray, start: float, end: float, width: float) -> np.ndarray:
    return sigmoid((doy - start) / width) * sigmoid((end - doy) / width)


def _system_fields(geo: Geography, cal: _Calendar, systems: Systems) -> tuple[np.ndarray, ...]:
    """Rain, cyclonic wind (u, v) and pressure deficit of all systems alive on these days."""
    shape = (len(cal.t),) + geo.lat.shape
    rain, u, v, dp = (np.zeros(shape) for _ in range(4))
    coslat = np.cos(np.deg2rad(geo.lat))
    for i in range(len(systems.t0)):
        tau = cal.t - systems.t0[i]
        alive = np.nonzero((tau >= 0.0) & (tau <= systems.life[i]))[0]
        if alive.size == 0:
            continue
        tau = tau[alive]
        ramp = _col(np.sin(np.pi * tau / systems.life[i]) ** 0.5)
        clat = _col(systems.lat0[i] + systems.vlat[i] * tau)
        clon = _col(systems.lon0[i] + systems.vlon[i] * tau)
        r = systems.radius[i]
        dy, dx = geo.lat[None] - clat, (geo.lon[None] - clon) * coslat[None]
        core = np.exp(-0.5 * (dx**2 + dy**2) / r**2)
        ry = dy - systems.rain_dlat[i]
        rx = dx - systems.rain_dlon[i] * coslat[None]
        rain[alive] += systems.rain[i] * ramp * np.exp(-0.5 * (rx**2 + ry**2) / r**2)
        swirl = systems.wind[i] * ramp * np.exp(0.5) * core / r  # Gaussian vortex, anticlockwise
        u[alive] -= swirl * dy
        v[alive] += swirl * dx
        dp[alive] += systems.dp[i] * ramp * core
    return rain, u, v, dp


def precipitation(geo: Geography, cal: _Calendar, n: np.ndarray, sys_rain: np.ndarray, monsoon: np.ndarray) -> np.ndarray:
    """Day totals (mm): seasonal background rates times intermittent texture ``n``, plus systems."""
    doy = _col(cal.doy)
    iso = 1.0 + ISO_AMPLITUDE * np.cos(
        2.0 * np.pi * (_col(cal.t) / ISO_PERIOD_DAYS - (geo.lat[None] - 5.0) / ISO_WAVELENGTH_DEG)
        + _col(cal.iso_phase)
    )
    winter = np.maximum(0.0, np.cos(2.0 * np.pi * (doy - 30.0) / DAYS_PER_YEAR)) ** 2
    maturity = 0.7 + 0.3 * np.exp(-(((doy - MONSOON_PEAK_DOY) / 40.0) ** 2))  # Jul-Aug peak
    background = (
        geo.monsoon_rain[None] * monsoon * iso * maturity * _col(cal.strength)
        + geo.ne_monsoon_rain[None] * _season(doy, 290.0, 350.0, 6.0)
        + geo.premonsoon_rain[None] * _season(doy, 95.0, 160.0, 8.0) * (1.0 - monsoon)
        + geo.winter_rain[None] * winter
    )
    texture = np.maximum(0.0, 1.0 + RAIN_SPREAD * n) ** RAIN_POWER / RAIN_NORM
    rain = background * texture + sys_rain * (0.4 + 0.6 * texture)
    return np.where(rain < DRIZZLE_MM, 0.0, rain)


def toa_insolation(lat: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Daily-mean top-of-atmosphere insolation (W m-2) from the solar geometry."""
    phi = np.deg2rad(lat)[None]
    decl = _col(0.409 * np.sin(2.0 * np.pi * doy / 365.0 - 1.39))
    dr = _col(1.0 + 0.033 * np.cos(2.0 * np.pi * doy / 365.0))
    ws = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0))
    return SOLAR_CONSTANT / np.pi * dr * (ws * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(ws))


def clear_sky_temperature(geo: Geography, doy: np.ndarray) -> np.ndarray:
    """Seasonal cycle without cloud: warmest in June inland, small cycle at sea and in the south."""
    annual = 302.0 - 0.25 * np.maximum(geo.lat - 10.0, 0.0) - 0.0065 * geo.elevation
    amplitude = (1.0 + 0.42 * np.maximum(geo.lat - 8.0, 0.0)) * (0.3 + 0.7 * geo.land)
    return annual[None] + amplitude[None] * np.cos(2.0 * np.pi * (_col(doy) - 165.0) / DAYS_PER_YEAR)


def winds(geo: Geography, cal: _Calendar, tex: Textures, swirl_u: np.ndarray, swirl_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """10-m wind: south-westerly monsoon flow (easterly along the trough in the north),
    north-easterly winter monsoon with westerlies beyond 31N; weaker over land and mountains."""
    m = _col(large_scale_monsoon(cal))
    trough = sigmoid((geo.lat - 23.0) / 2.0)
    north = sigmoid((geo.lat - 31.0) / 2.0)
    u_summer, v_summer = 8.0 * (1.0 - 1.4 * trough), 3.5 * (1.0 - 0.6 * trough)
    u_winter, v_winter = -3.0 + 5.0 * north, -2.5 * (1.0 - north)
    drag = 1.0 - 0.55 * geo.land - 0.2 * np.minimum(geo.elevation / 3000.0, 1.0)
    lat1d, lon1d = geo.lat[:, 0], geo.lon[0]
    u = drag * (m * u_summer + (1.0 - m) * u_winter) + swirl_u + 1.5 * tex.u(cal.t, lat1d, lon1d)
    v = drag * (m * v_summer + (1.0 - m) * v_winter) + swirl_v + 1.5 * tex.v(cal.t, lat1d, lon1d)
    return u, v


def daily_weather(geo: Geography, days: np.ndarray, textures: Textures, draws: dict[int, YearDraws]) -> Weather:
    """All fields for the given days (``datetime64[D]``) on ``geo``'s grid.

    ``draws`` must hold the days' years and the year before (systems born in late December
    live on into January). Long spans are computed in blocks of ``BLOCK_DAYS`` so that the
    working arrays stay cache-sized.
    """
    days = np.asarray(days, dtype="datetime64[D]")
    if len(days) > BLOCK_DAYS:
        parts = [daily_weather(geo, days[i : i + BLOCK_DAYS], textures, draws) for i in range(0, len(days), BLOCK_DAYS)]
        return Weather(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in Weather.__dataclass_fields__})
    cal = _calendar(days, draws)
    lat1d, lon1d = geo.lat[:, 0], geo.lon[0]
    systems = Systems.concat([d.systems for _, d in sorted(draws.items())])
    sys_rain, swirl_u, swirl_v, sys_dp = _system_fields(geo, cal, systems)
    monsoon = monsoon_envelope(geo, cal)
    n_rain = textures.rain(cal.t, lat1d, lon1d)
    rain = precipitation(geo, cal, n_rain, sys_rain, monsoon)

    wet = 1.0 - np.exp(-rain / 6.0)
    cloud = np.clip(0.08 + 0.55 * monsoon + 0.35 * wet + 0.08 * n_rain, 0.0, 1.0)
    transmissivity = np.minimum(0.72 + 3e-5 * geo.elevation, 0.85)[None]
    ssrd = toa_insolation(geo.lat, cal.doy) * transmissivity * (1.0 - 0.68 * cloud)

    t_clear = clear_sky_temperature(geo, cal.doy)
    t2m = t_clear - 3.0 * cloud - 0.12 * np.minimum(rain, 40.0) + 1.0 * textures.temperature(cal.t, lat1d, lon1d)
    humid = np.clip(0.2 + 0.7 * monsoon + 0.3 * (1.0 - geo.land)[None] + 0.25 * (1.0 - np.exp(-rain / 10.0)), 0.0, 1.0)
    noise = 1.0 + 0.15 * textures.dewpoint(cal.t, lat1d, lon1d)
    depression = np.maximum(1.2 + 0.9 * np.maximum(t_clear - 280.0, 0.0) * (1.0 - humid) * noise, 0.3)
    d2m = t2m - depression

    u10, v10 = winds(geo, cal, textures, swirl_u, swirl_v)

    heat_low = 900.0 * np.clip((geo.lat - 5.0) / 25.0, 0.0, 1.0) * (0.4 + 0.6 * geo.land)
    p_sea = (
        101100.0
        - heat_low[None] * np.cos(2.0 * np.pi * (_col(cal.doy) - 190.0) / DAYS_PER_YEAR)
        - sys_dp
        + 120.0 * textures.pressure(cal.t, lat1d, lon1d)
    )
    sp = p_sea * np.exp(-geo.elevation / (29.27 * 288.0))[None]  # scale height R*T/g
    return Weather(precip=rain, t2m=t2m, d2m=d2m, u10=u10, v10=v10, ssrd=ssrd, sp=sp, cloud=cloud)
