"""Static geography of the demo world: land, elevation, rain climatology and soils.

Every field is an analytic function of (latitude, longitude), so the same world can be
evaluated on the coarse ERA5-like meteorological grid and on the finer ERA5-Land-like
soil-moisture grid without interpolation. The shapes are deliberately rough caricatures of
South Asia (a hand-drawn coastline, a Himalaya/Tibet step, the Western Ghats, a Thar desert),
good enough to give the monsoon its familiar geography; they are not real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

# A coarse hand-drawn South-Asian coastline (lon, lat), clockwise from the domain's NW corner.
_MAINLAND = [
    (55.0, 45.0), (110.0, 45.0), (110.0, 13.0), (100.2, 13.4), (98.5, 10.0), (97.6, 16.5),
    (95.0, 15.8), (94.3, 19.5), (92.3, 21.0), (91.5, 22.7), (89.0, 21.7), (86.9, 21.4),
    (85.8, 19.8), (83.3, 17.7), (82.2, 16.6), (80.3, 15.5), (80.3, 13.1), (79.8, 10.3),
    (78.2, 8.8), (77.5, 8.1), (76.3, 9.9), (75.0, 12.8), (73.9, 15.4), (72.8, 19.0),
    (72.6, 21.2), (70.4, 20.9), (69.0, 22.3), (68.5, 23.5), (67.0, 24.8), (62.3, 25.1),
    (55.0, 25.3),
]
_SRI_LANKA = [(79.9, 6.0), (80.6, 5.9), (81.9, 7.5), (81.2, 8.6), (80.2, 9.8), (79.8, 8.0)]
LAND = shapely.MultiPolygon([shapely.Polygon(_MAINLAND), shapely.Polygon(_SRI_LANKA)])

COAST_WIDTH_DEG = 1.5  # e-folding width of the land/sea transition ("continentality")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def gauss(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float, slat: float, slon: float) -> np.ndarray:
    return np.exp(-0.5 * (((lat - lat0) / slat) ** 2 + ((lon - lon0) / slon) ** 2))


@dataclass(frozen=True)
class Geography:
    """Static fields on one grid (all [H, W], float64)."""

    lat: np.ndarray
    lon: np.ndarray
    land: np.ndarray  # smooth land fraction in [0, 1] (1 deep inland)
    elevation: np.ndarray  # m
    monsoon_rain: np.ndarray  # JJAS background rain rate at full monsoon activity, mm/day
    ne_monsoon_rain: np.ndarray  # Oct-Dec north-east monsoon rate, mm/day
    premonsoon_rain: np.ndarray  # Apr-May convective rate, mm/day
    winter_rain: np.ndarray  # light winter rate in the north (western disturbances aside), mm/day
    capacity: np.ndarray  # bucket capacity, mm of water
    theta_res: np.ndarray  # residual volumetric water content, m3/m3 (empty bucket)
    theta_sat: np.ndarray  # saturated volumetric water content, m3/m3 (full bucket)


def continentality(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Smooth land fraction from the signed distance to the coastline."""
    pts = shapely.points(lon.ravel(), lat.ravel())
    dist = shapely.distance(LAND.boundary, pts)
    inside = shapely.contains_xy(LAND, lon.ravel(), lat.ravel())
    signed = np.where(inside, dist, -dist).reshape(lat.shape)
    return sigmoid(signed / COAST_WIDTH_DEG * 4.0)


def western_ghats_lon(lat: np.ndarray) -> np.ndarray:
    """Longitude of the Western Ghats crest: Kerala ~76.5E at 10N, ~73.5E at 19N."""
    return 76.6 - 0.33 * (lat - 10.0)


def himalaya_front_lat(lon: np.ndarray) -> np.ndarray:
    """Latitude of the Himalayan front: ~34.5N at 74E curving to ~28N east of 88E."""
    return 27.8 + 0.48 * np.maximum(0.0, 88.0 - lon) - 0.4 * np.maximum(0.0, lon - 97.0)


def elevation(lat: np.ndarray, lon: np.ndarray, land: np.ndarray) -> np.ndarray:
    """Metres above sea level: Tibet step, Himalayan foothills, Ghats, Deccan, hills."""
    front = himalaya_front_lat(lon)
    tibet = 3300.0 * sigmoid((lat - front - 1.5) / 0.4)
    foothills = 1200.0 * sigmoid((lat - front) / 0.3)
    ghats_window = sigmoid((lat - 8.5) / 0.5) * sigmoid((21.5 - lat) / 0.5)
    ghats = 900.0 * np.exp(-0.5 * ((lon - western_ghats_lon(lat) - 0.5) / 0.5) ** 2) * ghats_window
    deccan = 500.0 * gauss(lat, lon, 17.0, 77.5, 4.0, 3.0)
    arakan = 1200.0 * gauss(lat, lon, 22.0, 93.8, 3.5, 0.8)
    iran = 1000.0 * sigmoid((68.0 - lon) / 1.0) * sigmoid((lat - 26.0) / 1.0)
    z = np.maximum(tibet + foothills, 0.0) + ghats + deccan + arakan + iran
    return z * land


def monsoon_rain(lat: np.ndarray, lon: np.ndarray, land: np.ndarray, elev: np.ndarray) -> np.ndarray:
    """JJAS rain rate at full activity: Ghats and NE-India maxima, Thar and Tibet dry."""
    ghats_window = sigmoid((lat - 8.0) / 0.7) * sigmoid((21.0 - lat) / 0.7)
    base = 5.5 * (0.6 + 0.4 * land)
    ghats = 18.0 * np.exp(-0.5 * ((lon - western_ghats_lon(lat) + 0.2) / 0.9) ** 2) * ghats_window
    meghalaya = 16.0 * gauss(lat, lon, 25.5, 91.5, 1.6, 2.2)
    bay = 6.0 * gauss(lat, lon, 20.0, 87.5, 3.0, 4.0)
    foothills = 5.0 * np.exp(-0.5 * ((lat - himalaya_front_lat(lon) + 0.8) / 1.0) ** 2)
    rate = base + ghats + meghalaya + bay + foothills
    rate *= 1.0 - 0.85 * gauss(lat, lon, 26.5, 70.0, 4.5, 4.5)  # Thar desert
    rate *= 1.0 - 0.55 * gauss(lat, lon, 12.0, 79.0, 2.0, 1.3)  # Tamil Nadu rain shadow
    rate *= 1.0 - 0.9 * sigmoid((elev - 3200.0) / 400.0)  # Tibetan plateau
    rate *= sigmoid((lon - 65.0) / 1.5)  # arid Baluchistan / Arabian Sea west
    rate *= 0.55 + 0.45 * sigmoid((lat - 5.0) / 1.5)  # ITCZ has left the equator
    return rate


def soils(lat: np.ndarray, lon: np.ndarray, land: np.ndarray, elev: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bucket capacity (mm) and the water contents of an empty and a full bucket.

    Clay-rich black soils of the Deccan and the alluvium of the Indo-Gangetic plain hold much
    water; the Thar's sands and the thin soils of the mountains hold little.
    """
    deccan = gauss(lat, lon, 19.5, 76.5, 3.5, 3.5)
    gangetic = gauss(lat, lon, 26.0, 82.0, 2.2, 7.0)
    thar = gauss(lat, lon, 26.5, 70.5, 3.5, 3.5)
    mountains = sigmoid((elev - 1500.0) / 400.0)
    clay = np.clip(0.35 + 0.5 * deccan + 0.3 * gangetic - 0.3 * thar - 0.25 * mountains, 0.05, 0.95)
    clay = land * clay + (1.0 - land) * 0.5
    capacity = 45.0 + 110.0 * clay
    theta_res = 0.03 + 0.07 * clay
    theta_sat = 0.34 + 0.14 * clay
    return capacity, theta_res, theta_sat


def geography(lat1d: np.ndarray, lon1d: np.ndarray) -> Geography:
    """Evaluate the static world on the grid spanned by 1-D latitude/longitude vectors."""
    lat, lon = np.meshgrid(np.asarray(lat1d, float), np.asarray(lon1d, float), indexing="ij")
    land = continentality(lat, lon)
    elev = elevation(lat, lon, land)
    ne = 7.0 * gauss(lat, lon, 11.5, 79.8, 2.5, 1.8)
    pre = 7.0 * gauss(lat, lon, 26.0, 92.0, 2.5, 3.0) + 3.0 * gauss(lat, lon, 9.5, 76.5, 1.5, 1.5)
    winter = 1.0 * sigmoid((lat - 30.0) / 1.5) * (1.0 - 0.7 * sigmoid((elev - 3500.0) / 400.0))
    capacity, theta_res, theta_sat = soils(lat, lon, land, elev)
    return Geography(
        lat=lat, lon=lon, land=land, elevation=elev,
        monsoon_rain=monsoon_rain(lat, lon, land, elev),
        ne_monsoon_rain=ne, premonsoon_rain=pre, winter_rain=winter,
        capacity=capacity, theta_res=theta_res, theta_sat=theta_sat,
    )
