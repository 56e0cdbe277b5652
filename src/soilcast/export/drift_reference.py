"""Reference distributions shipped with every SavedModel, for drift monitoring (PSI).

``drift_reference.json`` maps each input variable name to its reference distribution over
mask cells and training years, in canonical units, and has one more key, ``prediction``,
holding ``{"soil_moisture": {...}}`` (observed target over the same cells and years: the
distribution a well-behaved model's output should follow). Each entry::

    {"edges": [psi_bins + 1 quantile edges], "proportions": [psi_bins], "mean", "std",
     "units", "n", "binning": "right_open_clipped",
     "monthly": {"1": {"proportions", "mean", "std", "n"}, ..., "12": {...}}}

``monthly`` holds the same variable's distribution on the training days of each calendar
month, binned on the all-year ``edges`` (so the months mix: a drift window holding July and
August requests is compared with the average of the two), 12 histograms per variable; a
month without training days is left out (consumers fall back to the all-year shares).
The gateway compares each request window with the month of its last input day.

Binning convention (``bin_index``): value x falls in bin ``searchsorted(edges, x, "right") - 1``
clipped to ``[0, psi_bins - 1]``, i.e. bins are [e_i, e_{i+1}) and values below/above the
reference range count in the first/last bin. Quantile edges repeat where a variable has a
point mass (rain-free days at tp = 0); the repeated bins are simply empty. Consumers should
use :func:`bin_proportions` so reference and live data are binned identically.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BINNING = "right_open_clipped"


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    edges = np.asarray(edges, np.float64)
    idx = np.searchsorted(edges, np.asarray(values, np.float64), side="right") - 1
    return np.clip(idx, 0, edges.size - 2)


def bin_proportions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of finite ``values`` in each bin of ``edges`` (zeros when none is finite)."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    n_bins = len(edges) - 1
    if values.size == 0:
        return np.zeros(n_bins)
    counts = np.bincount(bin_index(values, edges), minlength=n_bins)
    return counts / values.size


def distribution(values: np.ndarray, n_bins: int, units: str) -> dict[str, Any]:
    """Quantile edges, bin shares and moments of the finite ``values``."""
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("drift reference: no finite values to describe")
    edges = np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1))
    return {
        "edges": edges.tolist(),
        "proportions": bin_proportions(values, edges).tolist(),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "units": units,
        "n": int(values.size),
        "binning": BINNING,
    }


def with_months(dist: dict[str, Any], values: np.ndarray, months: np.ndarray) -> dict[str, Any]:
    """``dist`` plus the ``monthly`` shares of ``values`` [days, cells] (``months`` [days],
    1-12) on ``dist``'s edges."""
    edges = np.asarray(dist["edges"], np.float64)
    monthly: dict[str, Any] = {}
    for m in range(1, 13):
        v = np.asarray(values[months == m], np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size:
            monthly[str(m)] = {"proportions": bin_proportions(v, edges).tolist(), "mean": float(v.mean()),
                               "std": float(v.std()), "n": int(v.size)}
    return {**dist, "monthly": monthly}


def drift_reference(cfg: Any, tensors: Any) -> dict[str, Any]:
    """Reference for every input variable and the target, over mask cells and train years,
    all-year and per calendar month."""
    lo, hi = cfg.split.train_years
    years = tensors.time.year
    rows = np.flatnonzero((years >= lo) & (years <= hi))
    if rows.size == 0:
        raise ValueError(f"drift reference: the tensor store has no days in train years {lo}-{hi}")
    mask = np.asarray(tensors.mask, bool)
    units = dict(tensors.attrs.get("units", {}))
    out: dict[str, Any] = {}
    X = tensors.X[rows[0] : rows[-1] + 1]
    months = np.asarray(tensors.time.month)[rows[0] : rows[-1] + 1]
    for c, name in enumerate(tensors.variables):
        values = np.asarray(X[..., c])[:, mask]
        unit = units.get(name, next(v.canonical_units for v in cfg.variables if v.name == name))
        out[name] = with_months(distribution(values, cfg.serving.psi_bins, unit), values, months)
    target = np.asarray(tensors.Y[rows[0] : rows[-1] + 1, ..., 0])[:, mask]
    dist = distribution(target, cfg.serving.psi_bins, cfg.target.canonical_units)
    out["prediction"] = {"soil_moisture": with_months(dist, target, months)}
    return out
