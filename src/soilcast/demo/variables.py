"""What the demo generator can synthesise: each params variable's field of the demo weather,
in ERA5's source units (shared by the reanalysis files and the forecast archive)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from soilcast.demo.bucket import SECONDS_PER_DAY
from soilcast.demo.weather import Weather


@dataclass(frozen=True)
class VarInfo:
    units: str
    long_name: str
    standard_name: str
    values: Callable[[Weather], np.ndarray]


# How the generator synthesises each variable it knows, in ERA5's units: params.yaml's
# variables are looked up here by name (a variable not listed cannot be generated).
MET_VARIABLES: dict[str, VarInfo] = {
    "tp": VarInfo("m", "Total precipitation", "lwe_thickness_of_precipitation_amount", lambda w: w.precip / 1000.0),
    "t2m": VarInfo("K", "2 metre temperature", "air_temperature", lambda w: w.t2m),
    "d2m": VarInfo("K", "2 metre dewpoint temperature", "dew_point_temperature", lambda w: w.d2m),
    "u10": VarInfo("m s**-1", "10 metre U wind component", "eastward_wind", lambda w: w.u10),
    "v10": VarInfo("m s**-1", "10 metre V wind component", "northward_wind", lambda w: w.v10),
    "ssrd": VarInfo(
        "J m**-2", "Surface short-wave (solar) radiation downwards",
        "integral_wrt_time_of_surface_downwelling_shortwave_flux_in_air", lambda w: w.ssrd * SECONDS_PER_DAY,
    ),
    "sp": VarInfo("Pa", "Surface pressure", "surface_air_pressure", lambda w: w.sp),
    # not in params.yaml's inputs; the weather model's cloud, for a params file that adds it
    "tcc": VarInfo("(0 - 1)", "Total cloud cover", "cloud_area_fraction", lambda w: w.cloud),
}
SWVL1 = VarInfo("m**3 m**-3", "Volumetric soil water layer 1", "volume_fraction_of_condensed_water_in_soil", lambda w: w)
