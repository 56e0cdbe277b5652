"""Reference distributions shipped with every SavedModel, for drift monitoring (PSI).

``drift_reference.json`` maps each input variable name to its reference distribution over
mask cells and training years, in canonical units, and has one more key, ``prediction``,
holding ``{"soil_moisture": {...}}`` (observed target over the same cells and years: the
distribution a well-behaved model's output should follow). Each entry::

    {"edges": [psi_bins + 1 quantile edges], "proportions": [psi_bins], "mean", "std",
     "units", "n", "binning": "right_open_clipped"}

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


def drift_reference(cfg: Any, tensors: Any) -> dict[str, Any]:
    """Reference for every input variable and the target, over mask cells and train years."""
    lo, hi = cfg.split.train_years
    years = tensors.time.year
    rows = np.flatnonzero((years >= lo) & (years <= hi))
    if rows.size == 0:
        raise ValueError(f"drift reference: the tensor store has no days in train years {lo}-{hi}")
    mask = np.asarray(tensors.mask, bool)
    units = dict(tensors.attrs.get("units", {}))
    out: dict[str, Any] = {}
    X = tensors.X[rows[0] : rows[-1] + 1]
    for c, name in enumerate(tensors.variables):
        values = np.asarray(X[..., c])[:, mask]
        unit = units.get(name, next(v.canonical_units for v in cfg.variables if v.name == name))
        out[name] = distribution(values, cfg.serving.psi_bins, unit)
    target = np.asarray(tensors.Y[rows[0] : rows[-1] + 1, ..., 0])[:, mask]
    out["prediction"] = {
        "soil_moisture": distribution(target, cfg.serving.psi_bins, cfg.target.canonical_units)
    }
    return out
