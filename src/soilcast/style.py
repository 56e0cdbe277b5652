"""One look for every figure: fixed colour scales per quantity, basin outlines, titles that say
what, which version and which period, and one way to save.

Why fixed scales: a colour scale set by each figure's own data (the old RMSE maps took
climatology's 0.055 as the top, so 0.008 against 0.011 was invisible) makes two figures, two
models or two runs impossible to compare by eye. The limits come from params
``evaluation.figures.scales`` (:class:`soilcast.config.FigureScales`, one field per quantity
of :data:`QUANTITIES`); values beyond them take the end colour, and the colour bar says so
with an arrow. Skill and anomaly are diverging and centred on 0, so "better than the
reference" is always blue and "worse" always red.

matplotlib is imported inside the functions: importing this module costs nothing, so the CLI
stays fast for commands that draw nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Quantity:
    """How one quantity is drawn: its colour bar label and colour map; ``diverging``: centred on 0."""

    label: str
    cmap: str
    diverging: bool = False


# One entry per field of :class:`soilcast.config.FigureScales` (a test keeps them in step).
QUANTITIES: dict[str, Quantity] = {
    "soil_moisture": Quantity("soil moisture (m³ m⁻³)", "YlGnBu"),
    "rmse": Quantity("RMSE (m³ m⁻³)", "YlOrRd"),  # dark red, not black, at the top: outlines stay visible
    "skill": Quantity("MSE skill, 1 − MSE/MSE_ref (blue: better)", "RdBu", diverging=True),
    "anomaly": Quantity("anomaly vs training-years climatology (m³ m⁻³)", "BrBG", diverging=True),
}


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display here, in CI or on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def color_scale(figures: Any, quantity: str, cmap: str | None = None) -> dict[str, Any]:
    """``cmap`` and ``norm`` keyword arguments for imshow/pcolormesh: the fixed limits of
    ``quantity`` (params ``evaluation.figures``), diverging ones centred on 0; ``cmap``
    overrides the quantity's colour map (soil moisture takes ``target.colormap``)."""
    from matplotlib.colors import Normalize, TwoSlopeNorm

    lo, hi = getattr(figures.scales, quantity)
    q = QUANTITIES[quantity]
    norm = TwoSlopeNorm(vcenter=0.0, vmin=lo, vmax=hi) if q.diverging else Normalize(vmin=lo, vmax=hi)
    return {"cmap": cmap or q.cmap, "norm": norm}


def extend(values: np.ndarray, figures: Any, quantity: str) -> str:
    """The colour bar's arrows: which ends of the fixed scale ``values`` run past."""
    lo, hi = getattr(figures.scales, quantity)
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    below, above = bool(finite.size and finite.min() < lo), bool(finite.size and finite.max() > hi)
    return {(False, False): "neither", (True, False): "min", (False, True): "max", (True, True): "both"}[(below, above)]


def colorbar(fig: Any, mappable: Any, axes: Any, figures: Any, quantity: str, values: np.ndarray,
             label: str | None = None) -> Any:
    """The colour bar of a fixed-scale quantity, with arrows where ``values`` run past it."""
    return fig.colorbar(mappable, ax=axes, label=label or QUANTITIES[quantity].label, shrink=0.85,
                        extend=extend(values, figures, quantity))


def cell_edges(centres: np.ndarray) -> np.ndarray:
    """[n + 1] edges of cells with these [n] centres (midpoints, the ends mirrored)."""
    c = np.asarray(centres, np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def basin_segments(lon: np.ndarray, lat: np.ndarray, basin_id: np.ndarray) -> list[list[tuple[float, float]]]:
    """The cell edges between cells of different ``basin_id`` (0: outside the mask, also
    beyond the grid), as ((lon, lat), (lon, lat)) segments."""
    ids = np.pad(np.asarray(basin_id), 1)  # the grid's border counts as outside
    xe, ye = cell_edges(lon), cell_edges(lat)
    segs = []
    for i, j in zip(*np.nonzero(ids[1:-1, :-1] != ids[1:-1, 1:])):  # between columns j-1 and j
        segs.append([(xe[j], ye[i]), (xe[j], ye[i + 1])])
    for i, j in zip(*np.nonzero(ids[:-1, 1:-1] != ids[1:, 1:-1])):  # between rows i-1 and i
        segs.append([(xe[j], ye[i]), (xe[j + 1], ye[i])])
    return segs


def outline_basins(ax: Any, lon: np.ndarray, lat: np.ndarray, basin_id: np.ndarray) -> None:
    """Basin outlines and the mask's edge as the store holds them (``basin_id`` [H, W], 0
    outside the mask): the edges between cells of different ids, at grid resolution, so the
    outline is exactly the area scored."""
    from matplotlib.collections import LineCollection

    segs = basin_segments(lon, lat, basin_id)
    if segs:
        ax.add_collection(LineCollection(segs, colors="k", linewidths=0.7), autolim=False)


def title(what: str, version: str | None = None, period: str | None = None) -> str:
    """A figure title naming what is shown, by which model version, over which period."""
    parts = [what] + ([version] if version else []) + ([period] if period else [])
    return " · ".join(parts)


def version(cfg: Any = None) -> str:
    """What produced a figure: the soilcast package version and, given the config, a short
    hash of the params it ran with (paths left out, so a moved checkout keeps its label).
    Evaluation figures show trained runs, not exported model versions, and the metrics carry
    no run identity, so this pair is the cheap identity every figure can state."""
    import hashlib
    import json

    from soilcast import __version__

    label = f"soilcast {__version__}"
    if cfg is None:
        return label
    params = {k: v for k, v in cfg.to_dict().items() if k != "paths"}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    return f"{label}, params {digest[:8]}"


def period(first: Any, last: Any, what: str = "test inits") -> str:
    """A period for a title: ``what first–last`` (dates, ``YYYY-MM-DD``)."""
    import pandas as pd

    return f"{what} {pd.Timestamp(first).date()}–{pd.Timestamp(last).date()}"


DEFAULT_DPI = 90  # figures drawn without the config (the training curves, older callers)


def save(fig: Any, path: Path, figures: Any = None) -> None:
    """Write ``fig`` as PNG atomically (a reader never sees half a file) and close it; at
    ``figures.dpi`` (params ``evaluation.figures``), :data:`DEFAULT_DPI` without them."""
    from soilcast.io.atomic import atomic_path

    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=getattr(figures, "dpi", DEFAULT_DPI), bbox_inches="tight", format="png")
    pyplot().close(fig)
