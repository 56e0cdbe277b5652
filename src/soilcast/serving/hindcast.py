"""Hindcast: forecast every day of a past period with the served model, over the API, and score every lead.

What an agency runs before it trusts a new model: the served version (not a local copy of the
network) forecasts from the store's windows, in batched Predict requests, and is scored
against the observed soil moisture at every lead it serves, next to every registered
reference (persistence, climatology, damped persistence, linear), each fitted once on the
training years of the store: overall, per season (JJAS monsoon / rest) and per basin, with
the evaluation's own scoring (:func:`soilcast.evaluation.evaluate.score` over the metric
registry :data:`soilcast.evaluation.metrics.METRICS`, whose leaderboard metrics are the
table's columns).

Dates are VALID dates (the days scored): lead k's forecast of valid day v was issued at
v - k, so every lead is scored on the same days (the same weather), and a lead's skill can be
compared with another's. The windows ending ``start - max(leads)`` .. ``end - min(leads)``
are forecast once, every lead, through the one forecasting path
(:class:`soilcast.forecasting.InputForecaster` whose ``predict`` is a gRPC Predict); each
request carries as many windows as fit in half of ``serving.max_message_mb`` (and at most
``serving.max_batch``). A version exported before the lead axis forecasts one lead.

Outputs (default ``artifacts/hindcast/<start>_<end>/``): ``hindcast.nc`` (CF-1.8; the served
forecast and every reference on (time = valid date, lead_time, lat, lon), the observations on
(time, lat, lon), ``forecast_reference_time(time, lead_time)``), ``scores.json`` and
``scores.md`` (one row per scope x model x lead).

A PROBABILISTIC served version (metadata ``quantile_levels`` beyond the median) is asked for
its ``forecast_products`` instead (``quantiles`` only, with each window's valid days), through
the same :class:`~soilcast.forecasting.InputForecaster` (``levels``; its ``forecast`` is the
median, scored as above). Its quantiles are scored too, per lead, overall and per basin
(:func:`soilcast.evaluation.probabilistic.probabilistic_scores`, area-weighted over the
valid days' mask cells): CRPS, the coverage of the central intervals (80 % in the table),
the spread-error ratio and the Brier score of "D1 or worse" (observed soil moisture at or
below the valid day's training-years 20th percentile, :func:`soilcast.export.products.
d1_threshold` of tables fitted on the store's training years as the exporter fits them),
with its skill against a reference: the ``clim_distribution`` reference's quantiles when
that reference is registered, else the climatological probability 0.2 (by construction the
event's frequency in the training years); ``scores.json`` names which (``brier_reference``).
The archive then also holds ``soil_moisture_quantiles(time, lead_time, quantile, lat, lon)``
and ``d1_threshold(time, lat, lon)``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.contract import ANTECEDENT, INPUT, QUANTILE_LEVELS, QUANTILES, calendar_bin, leads_of
from soilcast.data.store import Tensors
from soilcast.evaluation.metrics import METRICS

COLUMNS = tuple(name for name, m in METRICS.items() if m.leaderboard)  # as the leaderboard's
# the probabilistic table's columns (scores.json has every key of probabilistic_scores)
PROB_COLUMNS = ("crps", "coverage_80", "brier_d1", "brier_skill")
CLIM_PROBABILITY = 0.2  # the event's climatological frequency: D1 or worse is the lowest 20 %
CLIM_DISTRIBUTION = "clim_distribution"  # the probabilistic reference of the Brier skill, when registered
# CF-1.8 has no 64-bit integers and no fill value on coordinate variables (compliance-checker)
_DAYS = {"units": "days since 1970-01-01", "dtype": "int32"}
CF_ENCODING = {"lead_time": {"units": "days", "dtype": "int32"}, "time": _DAYS, "forecast_reference_time": _DAYS,
               "lat": {"_FillValue": None}, "lon": {"_FillValue": None}}
QUANTILE_ENCODING = {"quantile": {"_FillValue": None}}  # added when the archive has the quantile axis


def init_days(tensors: Tensors, start: dt.date, end: dt.date, seq_len: int, leads: list[int]) -> np.ndarray:
    """Store indices of the init days whose forecasts are valid ``start``..``end`` at some
    lead (``start - max(leads)`` .. ``end - min(leads)``); each needs ``seq_len`` days of
    history and every valid day its observation."""
    if end < start:
        raise ValueError(f"hindcast period {start}..{end}: end is before start")
    time = tensors.time
    first_valid = time[seq_len - 1] + pd.Timedelta(days=max(leads))
    if pd.Timestamp(start) < first_valid or pd.Timestamp(end) > time[-1]:
        raise ValueError(f"hindcast period {start}..{end}: valid days must lie in {first_valid.date()}.."
                         f"{time[-1].date()} (the store holds {time[0].date()}..{time[-1].date()}; "
                         f"seq_len={seq_len}, leads={list(leads)}, and each day needs its observation)")
    inits = pd.date_range(pd.Timestamp(start) - pd.Timedelta(days=max(leads)),
                          pd.Timestamp(end) - pd.Timedelta(days=min(leads)), freq="D")
    return time.get_indexer(inits).astype(np.int64)


def batch_size(seq_len: int, shape: tuple[int, int], channels: int, max_message_mb: int,
               max_batch: int | None = None) -> int:
    """Windows per request: half the gRPC message limit (so headers and outputs fit too),
    and at most the gateway's ``serving.max_batch``."""
    per_window = seq_len * shape[0] * shape[1] * channels * 4
    n = max(1, (max_message_mb << 20) // 2 // per_window)
    return n if max_batch is None else min(n, max_batch)


@dataclass
class RequestCounter:
    """A gRPC ``predict`` for :class:`InputForecaster` that counts its requests.

    With ``valid_doy`` [N, K] (the valid days of the N windows, in the order the forecaster
    sends them: :func:`soilcast.forecasting.request_batches` walks the windows in order) it
    asks ``forecast_products`` for the ``quantiles`` [b, K, Q, H, W] of a probabilistic
    version instead of ``serving_default``."""

    client: Any
    n_requests: int = 0
    valid_doy: np.ndarray | None = None
    sent: int = 0  # windows sent so far (the next rows of valid_doy)

    def __call__(self, x: dict[str, np.ndarray]) -> np.ndarray:
        x = dict(x)
        meteo = x.pop(INPUT)
        self.n_requests += 1
        if self.valid_doy is None:
            return self.client.predict_by_lead(meteo, **x)
        doy = self.valid_doy[self.sent : self.sent + len(meteo)]
        if len(doy) != len(meteo):
            raise RuntimeError(f"hindcast: {self.sent + len(meteo)} windows requested, {len(self.valid_doy)} planned")
        self.sent += len(meteo)
        return self.client.predict_products(meteo, doy, outputs=(QUANTILES,), **x)[QUANTILES]


def valid_days_of_year(time: pd.DatetimeIndex, ends: np.ndarray, leads: list[int]) -> np.ndarray:
    """[N, K] int32: the leap-calendar day of each window's valid days ``time[ends] + leads``."""
    valid = np.asarray(time[np.asarray(ends)].values)[:, None] + np.asarray(leads, "timedelta64[D]")[None, :]
    return calendar_bin(valid).astype(np.int32)


def on_valid_days(pred: np.ndarray, first_init: int, valid: np.ndarray, leads: list[int]) -> np.ndarray:
    """``[N_valid, K, H, W]``: for each valid day and lead the forecast issued ``lead`` days
    earlier, from ``pred`` ``[N_init, K, H, W]`` of consecutive init days from ``first_init``."""
    rows = np.asarray(valid, np.int64)[:, None] - np.asarray(leads, np.int64)[None, :] - first_init
    return pred[rows, np.arange(len(leads))[None, :]]


@dataclass(frozen=True)
class ValidForecasts:
    """One model's forecasts on the valid days, every lead (what ``evaluate.score`` reads):
    ``pred``/``obs`` ``[N, K, H, W]``, row ``n`` valid on ``valid[n]`` at every lead."""

    pred: np.ndarray
    obs: np.ndarray
    valid: pd.DatetimeIndex
    leads: tuple[int, ...]
    basin_id: np.ndarray
    model: str

    def valid_time(self, k: int) -> pd.DatetimeIndex:
        return self.valid

    @property
    def init_time(self) -> pd.DatetimeIndex:
        """The first lead's init days (``score`` reports their range; the summary gives all)."""
        return self.valid - pd.Timedelta(days=int(self.leads[0]))


@dataclass(frozen=True)
class ValidQuantiles:
    """The served quantiles on the valid days: ``q`` [N, K, Q, H, W] at ``levels`` (row ``n``
    valid on the same day as :class:`ValidForecasts`' row n at every lead), each valid day's
    D1-or-worse ``threshold`` [N, H, W], and the reference of the Brier skill: ``reference``
    names it, ``ref_q`` [N, K, Q', H, W] at ``ref_levels`` are its quantiles (None: the
    climatological probability :data:`CLIM_PROBABILITY`)."""

    q: np.ndarray
    levels: tuple[float, ...]
    threshold: np.ndarray
    reference: str
    ref_q: np.ndarray | None = None
    ref_levels: tuple[float, ...] = ()


def d1_thresholds(cfg: Any, t: Tensors, valid: pd.DatetimeIndex) -> np.ndarray:
    """[N, H, W] the D1-or-worse threshold of each valid day: the training-years 20th
    percentile of the exporter's tables (:func:`soilcast.export.products.product_tables`,
    :func:`~soilcast.export.products.d1_threshold`), so the event is the served one."""
    from soilcast.export.products import d1_threshold, product_tables

    try:
        tables = product_tables(cfg, t)
    except ValueError as err:
        raise ValueError(f"hindcast of a probabilistic model needs the training years {cfg.split.train_years} "
                         f"in the store for the D1-or-worse thresholds: {err}") from None
    return np.asarray(d1_threshold(tables, calendar_bin(valid)), np.float64)


def probabilistic_scores_by_lead(obs: np.ndarray, vq: ValidQuantiles, leads: list[int], weights: np.ndarray
                                 ) -> dict[str, dict[str, float | int | None]]:
    """Per lead key: :func:`soilcast.evaluation.probabilistic.probabilistic_scores` of the
    quantiles ``vq.q`` against ``obs`` [N, H, W] over every valid day's cells with positive
    ``weights`` [H, W], the reference's Brier score (``brier_d1_reference``), the Brier skill
    against it (``brier_skill``) and the number of points ``n``."""
    from soilcast.evaluation.probabilistic import brier, probabilistic_scores, skill
    from soilcast.quantiles import median_index

    cells = weights > 0
    o = obs[:, cells].reshape(-1)
    w = np.broadcast_to(weights[cells], (len(obs), int(cells.sum()))).reshape(-1)
    thr = vq.threshold[:, cells].reshape(-1)
    mid = median_index(vq.levels)
    out = {}
    for k, lead in enumerate(leads):
        q = np.moveaxis(vq.q[:, k][:, :, cells], 1, -1).reshape(-1, len(vq.levels))  # [N * cells, Q]
        s = probabilistic_scores(o, q[:, mid], q, vq.levels, w, thr)
        if vq.ref_q is None:
            ref = brier(o, np.full_like(o, CLIM_PROBABILITY), thr, w)
        else:
            rq = np.moveaxis(vq.ref_q[:, k][:, :, cells], 1, -1).reshape(-1, len(vq.ref_levels))
            ref = probabilistic_scores(o, rq[:, median_index(vq.ref_levels)], rq, vq.ref_levels, w, thr)["brier_d1"]
        n = int((np.isfinite(o) & np.isfinite(thr) & np.isfinite(q).all(axis=1)).sum())
        out[str(lead)] = {**{key: _finite(v) for key, v in s.items()}, "brier_d1_reference": _finite(ref),
                          "brier_skill": skill(s["brier_d1"], ref), "n": n}
    return out


def _finite(value: Any) -> float | None:
    """A score for JSON: None when not finite."""
    return float(value) if value is not None and np.isfinite(value) else None


def probabilistic_section(scores: dict[str, Any], reference: str) -> list[str]:
    """Markdown: the probabilistic table (scope x lead, :data:`PROB_COLUMNS`)."""
    lines = ["## Probabilistic scores of the served quantiles", "",
             "CRPS (m3/m3, quantile approximation), coverage of the central 80 % interval (nominal 0.8), Brier "
             "score of D1 or worse (observed soil moisture at or below the valid day's training-years 20th "
             f"percentile) and its skill against {reference}.", "",
             "| scope | lead | n | " + " | ".join(PROB_COLUMNS) + " |", "|---|---|---|" + "---|" * len(PROB_COLUMNS)]
    for scope, by_lead in [("overall", scores["overall"])] + [(f"basin {b}", v) for b, v in scores["basins"].items()]:
        for lead, m in by_lead.items():
            lines.append(f"| {scope} | {lead} | {m['n']} | " + " | ".join(_cell(m.get(c)) for c in PROB_COLUMNS) + " |")
    return lines + [""]


def reference_forecasts(cfg: Any, layout: Any, leads: list[int], block: Tensors, ends: np.ndarray,
                        quantiles: dict[str, tuple[tuple[float, ...], np.ndarray]] | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every registered reference, fitted once on the training years of the store, at the
    served ``leads``: ``({name: [N_init, K, H, W]}, {name: long name})``. The one place the
    hindcast touches the reference registry. ``quantiles``: filled with ``{name: (levels,
    [N_init, K, Q, H, W])}`` of the probabilistic references."""
    from soilcast.forecasting import quantile_forecast
    from soilcast.ml.models.references import reference_forecasters, references
    from soilcast.ml.train import load_tensors

    ref_cfg = cfg.model_copy(update={"window": cfg.window.model_copy(update={"leads": list(leads)})})
    try:
        fitted = reference_forecasters(ref_cfg, load_tensors(ref_cfg, layout.tensors))
    except ValueError as err:
        raise ValueError(f"hindcast needs the training years {cfg.split.train_years} in {layout.tensors} "
                         f"to fit the references: {err}") from None
    long_names = {n: r.long_name for n, r in references().items()}
    preds = {n: f.forecast(block, ends) for n, f in fitted.items()}
    if quantiles is not None:
        for n, f in fitted.items():
            q = quantile_forecast(f, block, ends)
            if q is not None:
                quantiles[n] = (tuple(float(t) for t in f.levels), q)
    return preds, {n: long_names[n] for n in fitted}


def archive_dataset(fcs: dict[str, ValidForecasts], served: str, lat: np.ndarray, lon: np.ndarray,
                    version: int | None, long_names: dict[str, str], quantiles: "ValidQuantiles | None" = None) -> Any:
    """The served forecast (key ``served``) and every reference on (time = valid date,
    lead_time, lat, lon) and the observations on (time, lat, lon), CF-1.8; with
    ``quantiles`` also the served quantiles on (time, lead_time, quantile, lat, lon) and each
    valid day's D1-or-worse threshold."""
    import xarray as xr

    from soilcast.serving.forecast import STANDARD_NAME, crs_variable

    fc = fcs[served]
    dims = ("time", "lead_time", "lat", "lon")
    grid = {"grid_mapping": "crs", "units": "m3 m-3", "standard_name": STANDARD_NAME}
    data = {"soil_moisture": (dims, fc.pred, {**grid, "long_name": f"hindcast soil moisture, {fc.model} "
                                              f"version {version} (served)"}),
            "observed": (("time", "lat", "lon"), fc.obs[:, 0], {**grid, "long_name": "observed (store) "
                                                                "surface soil moisture"})}
    data.update({n: (dims, f.pred, {**grid, "long_name": long_names[n]}) for n, f in fcs.items() if n != served})
    lead_time = np.asarray(fc.leads, "timedelta64[D]").astype("timedelta64[ns]")
    issued = fc.valid.values[:, None] - lead_time[None, :]
    ds = xr.Dataset(data, coords={
        "time": ("time", fc.valid, {"standard_name": "time", "long_name": "forecast valid date", "axis": "T"}),
        "lead_time": ("lead_time", lead_time, {"standard_name": "forecast_period",
                                               "long_name": "time after the last input day (init)"}),
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
        "forecast_reference_time": (("time", "lead_time"), issued, {"standard_name": "forecast_reference_time"}),
        "basin_id": (("lat", "lon"), fc.basin_id, {"long_name": "basin id (0 outside the basins)"}),
    }, attrs={"Conventions": "CF-1.8", "title": "soilcast hindcast archive", "institution": "soilcast",
              "source": f"soilcast model {fc.model} version {version} (served)",
              "history": f"soilcast hindcast, valid {fc.valid[0].date()}..{fc.valid[-1].date()}",
              "leads": np.asarray(fc.leads, np.int32)})
    if quantiles is not None:
        ds.coords["quantile"] = ("quantile", np.asarray(quantiles.levels, np.float64),
                                 {"long_name": "quantile level", "units": "1"})
        ds["soil_moisture_quantiles"] = (("time", "lead_time", "quantile", "lat", "lon"), quantiles.q, {
            **grid, "long_name": f"hindcast soil moisture quantiles, {fc.model} version {version} (served)"})
        ds["d1_threshold"] = (("time", "lat", "lon"), quantiles.threshold.astype(np.float32), {
            **grid, "long_name": "D1 or worse: the training-years 20th percentile of soil moisture for the "
                                 "valid day (at or below: the event of the Brier score)"})
        for name in ("soil_moisture_quantiles", "d1_threshold"):
            ds[name].encoding["_FillValue"] = np.float32(np.nan)
    ds["crs"] = crs_variable()
    for name in data:
        ds[name].encoding["_FillValue"] = np.float32(np.nan)
    return ds


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def skill_vs_best_reference(scores: dict[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, float | None]]]:
    """(per lead key the benchmark reference with the lowest overall MSE on THIS period,
    every model's MSE skill against it per lead). The question a hindcast answers at a
    glance: at which leads does the served model beat the best simple forecast? (The gate
    chooses the best reference on the validation years; here the period itself decides.)"""
    from soilcast.evaluation.leads import lowest_mse, skill_against
    from soilcast.ml.models.references import benchmark_names

    best = lowest_mse({n: scores[n]["overall"] for n in benchmark_names() if n in scores})
    skill = {name: {key: skill_against({key: s["overall"][key]}, {key: scores[ref]["overall"][key]})[key]
                    for key, ref in best.items()} for name, s in scores.items()}
    return best, skill


def _skill_section(scores: dict[str, Any]) -> list[str]:
    best, skill = skill_vs_best_reference(scores)
    keys = list(best)
    lines = ["## MSE skill vs the best reference at each lead", "",
             "Best reference on this period: " + ", ".join(f"lead {k}: {best[k]}" for k in keys) + ".", "",
             "| model | " + " | ".join(f"lead {k}" for k in keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(_cell(skill[name][k]) for k in keys) + " |" for name in scores]
    return lines + [""]


def score_table(scores: dict[str, Any], period: str, probabilistic: dict[str, Any] | None = None,
                reference: str = "") -> str:
    """Markdown: the skill against the best reference at each lead, (for a probabilistic
    served model its probabilistic scores, :func:`probabilistic_section`,) then per scope
    (overall, each season with data, each basin) one row per model and lead; the columns are
    the leaderboard metrics of the registry."""
    names = list(scores)
    first = scores[names[0]]
    leads = list(first["overall"])
    scopes = [("overall", lambda s: s["overall"])]
    scopes += [(f"season {k}", lambda s, k=k: s["seasons"][k]) for k, v in first["seasons"].items()
               if v[leads[0]]["n"]]
    scopes += [(f"basin {k}", lambda s, k=k: s["basins"][k]) for k in first["basins"]]
    lines = [f"# Hindcast scores, valid {period}", "",
             "Area-weighted (cos latitude) over basin-mask cells, against the store's observed soil moisture; "
             "lead k = forecast issued k days before the valid day (every lead scored on the same valid days); "
             "skill = 1 - MSE/MSE_reference at the same lead; acc against the training-years climatology.", ""]
    lines += _skill_section(scores)
    if probabilistic is not None:
        lines += probabilistic_section(probabilistic, reference)
    lines += ["## Every metric by lead", "",
              "| scope | model | lead | n | " + " | ".join(COLUMNS) + " |", "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for label, pick in scopes:
        for name in names:
            for lead, m in pick(scores[name]).items():
                lines.append(f"| {label} | {name} | {lead} | {m['n']} | "
                             + " | ".join(_cell(m.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _load_block(t: Tensors, inits: np.ndarray, seq_len: int, leads: list[int]) -> tuple[Tensors, int]:
    """The days the windows and their valid days need, as numpy arrays, and its first index."""
    lo, hi = int(inits[0]) - seq_len + 1, int(inits[-1]) + max(leads) + 1
    return replace(t, X=np.asarray(t.X[lo:hi]), Y=np.asarray(t.Y[lo:hi]), time=t.time[lo:hi]), lo


def run_hindcast(cfg: Any, layout: Any, server: str, start: dt.date, end: dt.date, out_dir: Path | None = None,
                 root_certificates: bytes | None = None) -> dict[str, Any]:
    """Hindcast ``start``..``end`` (valid dates) at every served lead on ``layout.tensors``;
    write the archive and the scores into ``out_dir`` (default
    ``<layout.hindcasts_dir>/<start>_<end>``) and return them."""
    from soilcast.data.store import open_tensors
    from soilcast.evaluation.evaluate import basin_names
    from soilcast.evaluation.metrics import area_weights
    from soilcast.forecasting import InputForecaster
    from soilcast.quantiles import median_index
    from soilcast.serving.client import SoilcastClient
    from soilcast.serving.forecast import check_compatible

    t = open_tensors(layout.tensors, load=False)
    with SoilcastClient(server, cfg.serving.model_name, root_certificates=root_certificates,
                        max_message_bytes=cfg.serving.max_message_mb << 20) as client:
        meta = client.metadata()
        check_compatible(meta, t)
        L, leads, antecedent = int(meta["seq_len"]), leads_of(meta), bool(meta.get(ANTECEDENT))
        inits = init_days(t, start, end, L, leads)
        block, lo = _load_block(t, inits, L, leads)
        batch = batch_size(L, t.mask.shape, len(t.variables) + int(antecedent), cfg.serving.max_message_mb,
                           cfg.serving.max_batch)
        levels = served_levels(meta)
        ends = inits - lo
        counter = RequestCounter(client, valid_doy=valid_days_of_year(block.time, ends, leads) if levels else None)
        model = str(meta.get("model", "served"))
        forecaster = InputForecaster(model, tuple(leads), counter, L, antecedent, batch,
                                     **({"levels": levels} if levels else {}))
        served_q = forecaster.forecast_quantiles(block, ends) if levels else None
        # a probabilistic version's forecast is its median (the served soil_moisture, by the contract)
        served = forecaster.forecast(block, ends) if not levels else served_q[:, :, median_index(levels)]
        version = client.last_version
    ref_q: dict[str, tuple[tuple[float, ...], np.ndarray]] = {}
    refs, long_names = reference_forecasts(cfg, layout, leads, block, ends, ref_q if levels else None)
    label = f"{model} v{version}"
    scores, fcs = score_all(t, block, lo, inits, start, end, leads, {label: served, **refs}, layout)
    period = f"{start}..{end}"
    summary = {"period": period, "model": model, "version": version, "leads": leads,
               "init_period": [str(t.time[inits[0]].date()), str(t.time[inits[-1]].date())],
               "n_days": len(fcs[label].valid), "n_windows": int(len(inits)),
               "n_requests": counter.n_requests, "batch_size": batch, "scores": scores}
    summary["best_reference"], summary["skill_vs_best_reference"] = skill_vs_best_reference(scores)
    vq = None
    if levels:
        vq = valid_quantiles(cfg, t, fcs[label], served_q, levels, ref_q, int(inits[0]) - lo, block)
        weights = area_weights(t.lat, t.mask)
        basins = basin_names(layout.tensors, t.basin_id)
        obs = fcs[label].obs[:, 0]
        summary.update(quantile_levels=list(levels), brier_reference=vq.reference, probabilistic={
            "overall": probabilistic_scores_by_lead(obs, vq, leads, weights),
            "basins": {name: probabilistic_scores_by_lead(obs, vq, leads, weights * (t.basin_id == b))
                       for b, name in basins.items()}})
    table = score_table(scores, period, summary.get("probabilistic"), summary.get("brier_reference", ""))
    archive = archive_dataset(fcs, label, t.lat, t.lon, version, long_names, vq)
    files = write_outputs(layout, out_dir, start, end, archive, summary, table)
    return {**summary, "table": table, "files": files}


def served_levels(meta: dict[str, Any]) -> tuple[float, ...]:
    """The served version's quantile levels when it is probabilistic (and has the products
    that answer them), else () (a point version: ``serving_default`` as always)."""
    levels = tuple(float(t) for t in meta.get(QUANTILE_LEVELS) or ())
    return levels if len(levels) > 1 and meta.get("products") else ()


def valid_quantiles(cfg: Any, t: Tensors, fc: ValidForecasts, q: np.ndarray, levels: tuple[float, ...],
                    ref_q: dict[str, tuple[tuple[float, ...], np.ndarray]], first_init: int, block: Tensors
                    ) -> ValidQuantiles:
    """The served quantiles ``q`` [N_init, K, Q, H, W] put on the valid days of ``fc``, the
    valid days' D1-or-worse thresholds and the Brier skill's reference (the
    ``clim_distribution`` reference's quantiles when registered, else the climatological
    probability :data:`CLIM_PROBABILITY`)."""
    vidx = block.time.get_indexer(fc.valid)
    leads = list(fc.leads)
    threshold = np.where(t.mask, d1_thresholds(cfg, t, fc.valid), np.nan)
    on_valid = on_valid_days(q, first_init, vidx, leads)  # [N, K, Q, H, W]
    if CLIM_DISTRIBUTION in ref_q:
        ref_levels, rq = ref_q[CLIM_DISTRIBUTION]
        return ValidQuantiles(on_valid, levels, threshold, f"the {CLIM_DISTRIBUTION} reference's quantiles",
                              on_valid_days(rq, first_init, vidx, leads), ref_levels)
    return ValidQuantiles(on_valid, levels, threshold, f"the climatological probability {CLIM_PROBABILITY}")


def score_all(t: Tensors, block: Tensors, lo: int, inits: np.ndarray, start: dt.date, end: dt.date,
              leads: list[int], preds: dict[str, np.ndarray], layout: Any
              ) -> tuple[dict[str, Any], dict[str, ValidForecasts]]:
    """Every model's forecasts put on the valid days and scored at every lead (the
    evaluation's ``score``, against the persistence and climatology of the same lead)."""
    from soilcast.evaluation.evaluate import basin_names, score
    from soilcast.evaluation.metrics import area_weights
    from soilcast.ml.models.references import context_references

    valid = pd.date_range(start, end, freq="D")
    vidx = block.time.get_indexer(valid)
    obs = np.asarray(block.Y[vidx, ..., 0], np.float32)
    obs = np.broadcast_to(obs[:, None], (len(vidx), len(leads), *obs.shape[1:]))
    fcs = {n: ValidForecasts(on_valid_days(p, int(inits[0]) - lo, vidx, leads), obs, valid, tuple(leads),
                             t.basin_id, n) for n, p in preds.items()}
    ctx = {key: ref.name for key, ref in context_references().items()}
    weights = area_weights(t.lat, t.mask)
    basins = basin_names(layout.tensors, t.basin_id)
    clim, pers = fcs[ctx["clim"]], fcs[ctx["persistence"]]
    scores = {n: score(fc, weights, clim, pers, basins) for n, fc in fcs.items()}
    for s in scores.values():
        s.pop("init_period", None)  # per lead different; the summary gives the init days
        s.pop("val", None)
    return scores, fcs


def write_outputs(layout: Any, out_dir: Path | None, start: dt.date, end: dt.date, archive: Any,
                  summary: dict[str, Any], table: str) -> list[str]:
    """hindcast.nc, scores.json and scores.md, each written atomically."""
    from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text
    from soilcast.layout import HindcastDir

    out = HindcastDir(Path(out_dir) if out_dir else Path(layout.hindcasts_dir) / f"{start}_{end}")
    encoding = CF_ENCODING | (QUANTILE_ENCODING if "quantile" in archive.coords else {})
    with atomic_path(out.archive) as tmp:
        archive.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    atomic_write_json(out.scores, summary)
    atomic_write_text(out.table, table)
    return [str(p) for p in (out.archive, out.scores, out.table)]
