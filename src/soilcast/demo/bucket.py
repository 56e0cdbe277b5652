"""Soil water of the demo world: Priestley-Taylor evaporative demand and a bucket model.

The bucket is the classic single-layer land-surface scheme (Manabe 1969): each day rain fills
the bucket, water above capacity runs off, evapotranspiration draws on it at the potential
rate times a moisture stress, and water above field capacity drains slowly. The bucket empties
over weeks, which gives soil moisture the memory a forecaster can exploit. All arithmetic is
float64 so the water balance closes to round-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIESTLEY_TAYLOR_ALPHA = 1.26
LATENT_HEAT = 2.45e6  # J kg-1, so 1 mm of water = 2.45 MJ m-2
SECONDS_PER_DAY = 86400.0
ALBEDO = 0.23
NET_LONGWAVE_LOSS = 40.0  # W m-2, a typical daily-mean net long-wave loss
STRESS_FRACTION = 0.75  # ET is unstressed above this share of capacity
FIELD_CAPACITY_FRACTION = 0.6  # slow drainage above this share of capacity
DRAINAGE_RATE = 0.03  # per day, of the water above field capacity


def priestley_taylor_pet(t2m_k: np.ndarray, ssrd_wm2: np.ndarray, sp_pa: np.ndarray) -> np.ndarray:
    """Potential evapotranspiration (mm/day) from temperature, radiation and pressure.

    PET = alpha * Delta / (Delta + gamma) * Rn / lambda with Rn = (1 - albedo) * Rs - L.
    """
    tc = np.asarray(t2m_k, float) - 273.15
    es = 0.6108 * np.exp(17.27 * tc / (tc + 237.3))  # kPa
    delta = 4098.0 * es / (tc + 237.3) ** 2  # kPa K-1
    gamma = 0.000665 * np.asarray(sp_pa, float) / 1000.0  # kPa K-1
    rn = np.maximum((1.0 - ALBEDO) * np.asarray(ssrd_wm2, float) - NET_LONGWAVE_LOSS, 0.0)
    return PRIESTLEY_TAYLOR_ALPHA * delta / (delta + gamma) * rn * SECONDS_PER_DAY / LATENT_HEAT


@dataclass(frozen=True)
class BucketResult:
    """Daily series [T, ...] in mm: end-of-day storage, evapotranspiration, runoff."""

    storage: np.ndarray
    et: np.ndarray
    runoff: np.ndarray  # saturation excess + slow drainage: everything that leaves but ET


def bucket_model(
    precip: np.ndarray, pet: np.ndarray, capacity: np.ndarray, initial: np.ndarray
) -> BucketResult:
    """Run the bucket day by day (axis 0 is time); storage stays in [0, capacity].

    Per day: add rain; spill above capacity; take ET = PET * min(1, S / (stress * capacity))
    (S at the start of the day) but never more than is there; drain a share of the water
    above field capacity. Hence storage[t] - storage[t-1] = P - ET - runoff exactly
    (up to float64 round-off), which the tests check.
    """
    precip = np.asarray(precip, np.float64)
    pet = np.asarray(pet, np.float64)
    capacity = np.broadcast_to(np.asarray(capacity, np.float64), precip.shape[1:])
    if np.any(precip < 0) or np.any(pet < 0):
        raise ValueError("bucket_model: precipitation and PET must be non-negative")
    storage = np.empty_like(precip)
    et = np.empty_like(precip)
    runoff = np.empty_like(precip)
    s = np.clip(np.asarray(initial, np.float64), 0.0, capacity)
    stress_level = STRESS_FRACTION * capacity
    field_capacity = FIELD_CAPACITY_FRACTION * capacity
    for t in range(precip.shape[0]):
        demand = pet[t] * np.minimum(1.0, s / stress_level)
        s = s + precip[t]
        spill = np.maximum(s - capacity, 0.0)
        s = s - spill
        e = np.minimum(demand, s)
        s = s - e
        drain = DRAINAGE_RATE * np.maximum(s - field_capacity, 0.0)
        s = s - drain
        storage[t], et[t], runoff[t] = s, e, spill + drain
    return BucketResult(storage=storage, et=et, runoff=runoff)


def volumetric(storage: np.ndarray, capacity: np.ndarray, theta_res: np.ndarray, theta_sat: np.ndarray) -> np.ndarray:
    """Volumetric water content (m3 m-3) of a bucket filled to ``storage`` of ``capacity``."""
    return theta_res + (theta_sat - theta_res) * np.clip(storage / capacity, 0.0, 1.0)
