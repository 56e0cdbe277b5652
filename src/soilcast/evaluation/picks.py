"""What the evaluation figures show, chosen once and reproducibly: the networks and the
references to compare against, the best network (on VALIDATION, never on test), the leads
and days shown, the season spans of the time series, the line style of every model and the
period a title names.

Light on purpose (records, numpy, pandas): the figure modules and
:mod:`soilcast.evaluation.uncertainty` share it without importing one another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from soilcast.evaluation.leads import lead_key
from soilcast.evaluation.seasons import season_rows
from soilcast.records import Leaderboard

# line style by the lead days' weather a network was fed; references dashed, in greys
FEED_STYLE = {"past": "o-", "forecast": "D--", "perfect": "^:"}
# bar hatch by feed, so a network's feeds share its colour in bar charts too
FEED_HATCH = {"past": "", "forecast": "//", "perfect": ".."}


def context_names() -> dict[str, str]:
    """The references skill maps and series compare against: {"clim": ..., "persistence": ...}."""
    from soilcast.ml.models.references import context_references

    return {key: ref.name for key, ref in context_references().items()}


def networks(metrics: Leaderboard) -> list[str]:
    """The scored networks, in file order."""
    return [n for n, e in metrics.scored().items() if e.kind == "network"]


def best_network(metrics: Leaderboard, among: Sequence[str] | None = None) -> str | None:
    """The SERVABLE network (of ``among``, default every scored one) with the lowest
    VALIDATION MSE averaged over the leads: a network fed perfect weather (the observed lead
    days, an upper bound that exists at no issue time) is never the one shown as what the
    service can do; one missing a lead's validation MSE is not a candidate; ties by name;
    None when there is none. The test years never choose."""
    from soilcast.contract import SERVABLE_FEEDS

    scored = metrics.scored()
    means = {}
    for name in among if among is not None else networks(metrics):
        entry = scored.get(name)
        if entry is None or entry.kind != "network" or entry.feed not in SERVABLE_FEEDS:
            continue
        vals = [(entry.val or {}).get(lead_key(k), {}).get("mse") for k in entry.leads]
        if vals and all(v is not None and math.isfinite(v) for v in vals):
            means[name] = sum(vals) / len(vals)
    return min(means, key=lambda n: (means[n], n)) if means else None


def end_leads(leads: Sequence[int]) -> list[int]:
    """Lead INDICES a two-lead figure shows: the first and the last."""
    return sorted({0, len(leads) - 1}) if len(leads) else []


def line_styles(metrics: Leaderboard) -> dict[str, dict[str, Any]]:
    """One colour per network (shared by its feeds, which differ by line style ``fmt`` and bar
    ``hatch``) and greys for the references, so a reader can follow a network from past
    weather to a forecast."""
    from matplotlib import colormaps

    from soilcast.contract import network_and_feed

    scored = metrics.scored()
    nets = list(dict.fromkeys(network_and_feed(n)[0] for n in networks(metrics)))
    refs = [n for n, e in scored.items() if e.kind != "network"]
    colours = {n: colormaps["tab10"](i % 10) for i, n in enumerate(nets)}
    greys = {n: str(0.15 + 0.6 * i / max(len(refs) - 1, 1)) for i, n in enumerate(refs)}
    out = {}
    for name, entry in scored.items():
        if entry.kind == "network":
            out[name] = {"fmt": FEED_STYLE[entry.feed], "color": colours[network_and_feed(name)[0]],
                         "hatch": FEED_HATCH[entry.feed]}
        else:
            out[name] = {"fmt": "s--", "color": greys[name], "hatch": ""}
    return out


def period_of(metrics: Leaderboard) -> str | None:
    """The test windows' init dates as a title states them (the first scored entry's)."""
    from soilcast.style import period

    entry = next(iter(metrics.scored().values()), None)
    return period(*entry.init_period) if entry and len(entry.init_period) == 2 else None


def pick_days(fc: Any, evaluation: Any) -> dict[str, int]:
    """Row of the wettest day of the wet season and of the driest of the dry season
    (area-mean observation of the lead view ``fc``; ``evaluation``: params ``evaluation``)."""
    mean = np.nanmean(np.where(fc.mask, fc.obs, np.nan), axis=(1, 2))
    seasons = season_rows(fc.valid_time, evaluation.seasons)
    out = {}
    for label, pick in ((evaluation.wet_season, np.nanargmax), (evaluation.dry_season, np.nanargmin)):
        idx = np.flatnonzero(seasons[label] & np.isfinite(mean))
        if idx.size:
            out[label] = int(idx[pick(mean[idx])])
    return out


def longest_run(rows: np.ndarray, time: Any) -> np.ndarray:
    """Indices of the longest run of consecutive days (one day apart in ``time``) among the
    True ``rows``; the earliest of equally long runs; empty when no row is True."""
    idx = np.flatnonzero(rows)
    if not idx.size:
        return idx
    days = np.asarray((time[idx].normalize() - time[idx[0]].normalize()).days)
    breaks = np.flatnonzero(np.diff(days) != 1) + 1
    runs = np.split(idx, breaks)
    return max(runs, key=len)  # max keeps the first of equal lengths


def season_spans(valid_time: Any, evaluation: Any) -> dict[str, np.ndarray]:
    """Per shown season (wet, then dry): the rows of its longest consecutive span of valid
    days in the test years (one season of one year, whole when the test years hold it)."""
    rows = season_rows(valid_time, evaluation.seasons)
    spans = {s: longest_run(rows[s], valid_time) for s in (evaluation.wet_season, evaluation.dry_season)}
    return {s: r for s, r in spans.items() if r.size}


def basin_mean(values: np.ndarray, weights: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """[N] area-weighted mean of ``values`` [N, H, W] over ``cells`` [H, W] (``weights``: the
    cos-latitude area weights), over the finite cells of each day; NaN for a day with none."""
    w = np.where(cells, weights, 0.0)[None] * np.isfinite(values)
    total = w.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.nansum(np.nan_to_num(values) * w, axis=(1, 2)) / total, np.nan)

