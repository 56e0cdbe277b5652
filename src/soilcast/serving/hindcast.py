"""Hindcast: forecast every day of a past period with the served model, over the API, and score every lead.

What an agency runs before it trusts a new model: the served version (not a local copy of the
network) forecasts from the store's windows, in batched Predict requests, and is scored
against the observed soil moisture at every lead it serves, next to every registered
reference (persistence, climatology, damped persistence, linear), each fitted once on the
training years of the store: overall, per season (``evaluation.seasons``) and per basin, with
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

What is hindcast: the server's default (``stable`` on the gateway), or a version or label
named (``--version`` / ``--label``); the summary names what answered (``served``). Its
requests are marked ``hindcast`` traffic, so replaying a past season does not read as live
drift on the gateway, and each call has the deadline ``serving.client_timeout_seconds``.

Outputs (default ``artifacts/hindcast/<start>_<end>/``): ``hindcast.nc`` (CF-1.8; the served
forecast and every reference on (time = valid date, lead_time, lat, lon), the observations on
(time, lat, lon), ``forecast_reference_time(time, lead_time)``), ``scores.json`` and
``scores.md`` (one row per scope x model x lead), and three figures
(:mod:`soilcast.serving.hindcast_figures`): ``hydrographs.png`` (per basin, the basin-mean
observed soil moisture, the served forecast at the first and last lead and persistence over
the valid days, seasons shaded), ``skill_by_lead.png`` (MSE skill vs persistence,
climatology and the best reference, per lead) and ``skill_by_season.png`` (skill vs
persistence and the best reference per season with days in the period, and lead). The
summary (``scores.json``, the printout) lists the figures (``figures``; ``files``).

A PROBABILISTIC served version (metadata ``quantile_levels`` beyond the median) is asked for
its ``forecast_products`` instead (``quantiles`` only, with each window's valid days), through
the same :class:`~soilcast.forecasting.InputForecaster` (with ``levels``); its median is its
forecast, scored as above. Every model is scored by the evaluation's own ``score``, so the
probabilistic scores come with every block (per lead; overall, per season, per basin):
``crps``, ``brier_d1`` (:func:`soilcast.evaluation.probabilistic.probabilistic_scores`; a point
forecast is its one-level distribution) and, for quantile forecasts, ``coverage_50/80/90`` and
``spread_error_ratio``. "D1 or worse" is observed soil moisture at or below the valid day's
training-years 20th percentile (:func:`soilcast.evaluation.evaluate.valid_thresholds` of tables
fitted on the store's training years as the exporter fits them). ``brier_skill_d1`` is the
Brier skill against the ``clim_distribution`` reference when it is registered (the
evaluation's reference), else against always forecasting the climatological probability 0.2
(the event's frequency in the training years by construction); ``scores.json`` names which
(``brier_reference``), and ``crps_skill_vs_<ref>`` is the CRPS skill against each
probabilistic reference. ``scores.md`` gets a table of the served model's and the
probabilistic references' CRPS, 80 % coverage, Brier score and Brier skill (overall and per
basin, per lead); the archive the served quantiles ``soil_moisture_quantiles(time, lead_time,
quantile, lat, lon)``. Every archive holds ``d1_threshold(time, lat, lon)``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from soilcast.contract import (
    ANTECEDENT,
    D1_OR_WORSE_PERCENTILE,
    INPUT,
    QUANTILE_LEVELS,
    QUANTILES,
    calendar_bin,
    leads_of,
)
from soilcast.data.store import Tensors
from soilcast.evaluation.metrics import METRICS

if TYPE_CHECKING:
    from soilcast.layout import HindcastDir
    from soilcast.serving.hindcast_figures import FigureInputs

COLUMNS = tuple(name for name, m in METRICS.items() if m.leaderboard)  # as the leaderboard's
# the probabilistic table's columns (scores.json has every key of probabilistic_scores)
PROB_COLUMNS = ("crps", "coverage_80", "brier_d1", "brier_skill_d1")
CLIM_PROBABILITY = D1_OR_WORSE_PERCENTILE / 100.0  # the event's climatological frequency (the lowest 20 %)
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
    quantiles: np.ndarray | None = None  # [N, K, Q, H, W] of a probabilistic model
    levels: tuple[float, ...] = ()  # its quantile levels (() for a point forecast)

    def valid_time(self, k: int) -> pd.DatetimeIndex:
        return self.valid

    @property
    def init_time(self) -> pd.DatetimeIndex:
        """The first lead's init days (``score`` reports their range; the summary gives all)."""
        return self.valid - pd.Timedelta(days=int(self.leads[0]))


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
                    version: int | None, long_names: dict[str, str], threshold: np.ndarray | None = None,
                    basin_names: dict[int, str] | None = None, parties: Mapping[str, str] | None = None) -> Any:
    """The served forecast (key ``served``) and every reference on (time = valid date,
    lead_time, lat, lon) and the observations on (time, lat, lon), CF-1.8 and ACDD-1.3 (cell
    bounds, the 0-7 cm ``depth``, :func:`soilcast.serving.forecast.discovery_attributes`); a
    probabilistic served model's quantiles on (time, lead_time, quantile, lat, lon);
    ``threshold`` [N, H, W]: each valid day's D1-or-worse soil moisture (the Brier score's
    event); ``basin_id`` names its basins (``basin_names``: id -> name) in ``flag_meanings``."""
    import xarray as xr

    from soilcast.serving.forecast import (
        COMPRESSION,
        DAILY_MEAN,
        STANDARD_NAME,
        add_grid_coords,
        crs_variable,
        discovery_attributes,
    )

    fc = fcs[served]
    dims = ("time", "lead_time", "lat", "lon")
    grid = {"grid_mapping": "crs", "units": "m3 m-3", "standard_name": STANDARD_NAME, "cell_methods": DAILY_MEAN}
    data = {"soil_moisture": (dims, fc.pred, {**grid, "coverage_content_type": "modelResult",
                                              "long_name": f"hindcast soil moisture, {fc.model} version {version} "
                                                           "(served)"}),
            "observed": (("time", "lat", "lon"), fc.obs[:, 0], {**grid, "coverage_content_type": "referenceInformation",
                                                                "long_name": "observed (store) surface soil moisture"})}
    data.update({n: (dims, f.pred, {**grid, "coverage_content_type": "referenceInformation",
                                    "long_name": long_names[n]}) for n, f in fcs.items() if n != served})
    lead_time = np.asarray(fc.leads, "timedelta64[D]").astype("timedelta64[ns]")
    issued = fc.valid.values[:, None] - lead_time[None, :]
    ids = sorted(int(b) for b in np.unique(fc.basin_id) if b > 0)
    names = {b: (basin_names or {}).get(b, f"basin_{b}") for b in ids}
    first, last = fc.valid[0].date(), fc.valid[-1].date()
    ds = xr.Dataset(data, coords={
        "time": ("time", fc.valid, {"standard_name": "time", "long_name": "forecast valid date", "axis": "T"}),
        "lead_time": ("lead_time", lead_time, {"standard_name": "forecast_period",
                                               "long_name": "time after the last input day (init)"}),
        "forecast_reference_time": (("time", "lead_time"), issued, {"standard_name": "forecast_reference_time",
                                                                    "long_name": "init day (last input day)"}),
        "basin_id": (("lat", "lon"), np.asarray(fc.basin_id, np.int32), {
            "long_name": "basin id (0 outside the basins)", "coverage_content_type": "auxiliaryInformation",
            "flag_values": np.asarray([0, *ids], np.int32),
            "flag_meanings": " ".join(["outside_the_basins", *(_flag_word(names[b]) for b in ids)])}),
    }, attrs={**discovery_attributes(
        "soilcast hindcast archive", f"hindcast-{first}-{last}-v{version}", lat, lon, first, last,
        f"Hindcast of the daily mean volumetric soil moisture of the 0-7 cm layer, valid {first}..{last} at "
        f"the lead day(s) {', '.join(str(int(k)) for k in fc.leads)}, by the served soilcast model {fc.model} "
        f"version {version}, with the reference forecasts it is scored against and the observations.",
        "soilcast model output and reference forecasts, not quality controlled", parties or {}),
        "source": f"soilcast model {fc.model} version {version} (served)",
        "history": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} soilcast hindcast, valid {first}..{last}",
        "leads": np.asarray(fc.leads, np.int32)})
    add_grid_coords(ds, lat, lon)
    if fc.quantiles is not None:
        ds.coords["quantile"] = ("quantile", np.asarray(fc.levels, np.float64),
                                 {"long_name": "quantile level", "units": "1"})
        ds["soil_moisture_quantiles"] = (("time", "lead_time", "quantile", "lat", "lon"), fc.quantiles, {
            **grid, "coverage_content_type": "modelResult",
            "long_name": f"hindcast soil moisture quantiles, {fc.model} version {version} (served)"})
        ds["soil_moisture_quantiles"].encoding.update({"_FillValue": np.float32(np.nan), **COMPRESSION})
    if threshold is not None:
        ds["d1_threshold"] = (("time", "lat", "lon"), np.asarray(threshold, np.float32), {
            **grid, "coverage_content_type": "referenceInformation",
            "long_name": "D1 or worse: the training-years 20th percentile of soil moisture for the "
                         "valid day (at or below: the event of the Brier score)"})
        ds["d1_threshold"].encoding.update({"_FillValue": np.float32(np.nan), **COMPRESSION})
    ds["crs"] = crs_variable()
    for name in data:
        ds[name].encoding.update({"_FillValue": np.float32(np.nan), **COMPRESSION})
    ds["basin_id"].encoding.update(COMPRESSION)
    return ds


def _flag_word(name: str) -> str:
    """A basin name as one CF flag_meanings word (blank-separated list): runs of other than
    letters, digits, '_', '-', '.' become '_'."""
    import re

    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(name)).strip("_") or "basin"


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


def score_table(scores: dict[str, Any], period: str, probabilistic: list[str] | None = None,
                reference: str = "") -> str:
    """Markdown: the skill against the best reference at each lead, (the probabilistic
    scores of the models ``probabilistic``, :func:`probabilistic_section`,) then per scope
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
    if probabilistic:
        lines += probabilistic_section(scores, probabilistic, reference)
    lines += ["## Every metric by lead", "",
              "| scope | model | lead | n | " + " | ".join(COLUMNS) + " |", "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for label, pick in scopes:
        for name in names:
            for lead, m in pick(scores[name]).items():
                lines.append(f"| {label} | {name} | {lead} | {m['n']} | "
                             + " | ".join(_cell(m.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def probabilistic_section(scores: dict[str, Any], models: list[str], reference: str) -> list[str]:
    """Markdown: per scope (overall, each basin) x model (``models``) x lead
    :data:`PROB_COLUMNS`."""
    lines = ["## Probabilistic scores", "",
             "CRPS (m3/m3, quantile approximation), share of observations inside the central 80 % interval "
             "(nominal 0.8), Brier score of D1 or worse (observed soil moisture at or below the valid day's "
             f"training-years 20th percentile) and its skill against {reference}.", "",
             "| scope | model | lead | n | " + " | ".join(PROB_COLUMNS) + " |",
             "|---|---|---|---|" + "---|" * len(PROB_COLUMNS)]
    scopes = [("overall", lambda s: s["overall"])]
    scopes += [(f"basin {b}", lambda s, b=b: s["basins"][b]) for b in scores[models[0]]["basins"]]
    for label, pick in scopes:
        for name in models:
            for lead, m in pick(scores[name]).items():
                lines.append(f"| {label} | {name} | {lead} | {m['n']} | "
                             + " | ".join(_cell(m.get(c)) for c in PROB_COLUMNS) + " |")
    return lines + [""]


def climatological_brier_skill(scores: dict[str, Any], fc: ValidForecasts, weights: np.ndarray,
                               threshold: np.ndarray, basins: dict[int, str],
                               seasons: Mapping[str, Sequence[int]]) -> None:
    """Into every block of every entry (overall, each season, each basin; every lead): the
    Brier skill of D1 or worse against always forecasting the event's climatological
    probability :data:`CLIM_PROBABILITY` (``brier_skill_d1``), for when no climatological
    distribution is registered. ``fc``: any model's forecasts (its observations and valid
    days are everyone's); ``threshold`` [N, K, H, W]."""
    from soilcast.evaluation.probabilistic import brier, skill
    from soilcast.evaluation.seasons import season_rows

    def ref(w: np.ndarray, rows: Any, k: int) -> float:
        cells = w > 0
        o = fc.obs[rows, k][:, cells]
        return brier(o.reshape(-1), np.full(o.size, CLIM_PROBABILITY), threshold[rows, k][:, cells].reshape(-1),
                     np.broadcast_to(w[cells], o.shape).reshape(-1))

    blocks = [("overall", None, weights, slice(None))]
    blocks += [("seasons", s, weights, rows) for s, rows in season_rows(fc.valid, seasons).items()]
    blocks += [("basins", name, weights * (fc.basin_id == b), slice(None)) for b, name in basins.items()]
    for scope, key, w, rows in blocks:
        refs = {str(lead): ref(w, rows, k) for k, lead in enumerate(fc.leads)}
        for entry in scores.values():
            by_lead_ = entry[scope] if key is None else entry[scope][key]
            for lead, block in by_lead_.items():
                block["brier_skill_d1"] = skill(block.get("brier_d1"), refs[lead])


def _load_block(t: Tensors, inits: np.ndarray, seq_len: int, leads: list[int]) -> tuple[Tensors, int]:
    """The days the windows and their valid days need, as numpy arrays, and its first index."""
    lo, hi = int(inits[0]) - seq_len + 1, int(inits[-1]) + max(leads) + 1
    return replace(t, X=np.asarray(t.X[lo:hi]), Y=np.asarray(t.Y[lo:hi]), time=t.time[lo:hi]), lo


def served_description(version: int | None, version_label: str | None, served: int | None) -> str:
    """What was asked and what answered, for the summary and the printout: ``label canary ->
    version 4``, ``version 3``, or ``label stable (default) -> version 3`` when nothing was
    named (the gateway's default, as for every request naming no version)."""
    if version is not None:
        return f"version {served}"
    if version_label:
        return f"label {version_label} -> version {served}"
    return f"label stable (default) -> version {served}"


def run_hindcast(cfg: Any, layout: Any, server: str, start: dt.date, end: dt.date, out_dir: Path | None = None,
                 root_certificates: bytes | None = None, *, version: int | None = None,
                 version_label: str | None = None) -> dict[str, Any]:
    """Hindcast ``start``..``end`` (valid dates) at every served lead on ``layout.tensors``;
    write the archive and the scores into ``out_dir`` (default
    ``<layout.hindcasts_dir>/<start>_<end>``) and return them.

    ``version`` or ``version_label`` pins what is hindcast (neither: the server's default,
    ``stable`` on the gateway); the result's ``served`` names what answered. Every call is
    marked ``hindcast`` traffic (a replay of the past stays out of the gateway's live drift)
    and has the deadline ``serving.client_timeout_seconds``: a hung server is a
    DEADLINE_EXCEEDED :class:`grpc.RpcError`, not a hindcast waiting forever."""
    from soilcast.data.store import open_tensors
    from soilcast.forecasting import InputForecaster
    from soilcast.layout import HindcastDir
    from soilcast.ml.models.references import context_references
    from soilcast.quantiles import median_index
    from soilcast.serving.client import SoilcastClient
    from soilcast.serving.drift import HINDCAST
    from soilcast.serving.forecast import check_compatible
    from soilcast.serving.hindcast_figures import FigureInputs

    if version is not None and version_label:
        raise ValueError(f"hindcast: version {version} and version_label {version_label!r} both given; name one")
    t = open_tensors(layout.tensors, load=False)
    with SoilcastClient.from_config(cfg, server, root_certificates=root_certificates, traffic=HINDCAST,
                                    version=version, version_label=version_label) as client:
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
        served_version = client.last_version
    served_as = served_description(version, version_label, served_version)
    quantiles: dict[str, tuple[tuple[float, ...], np.ndarray]] = {}
    refs, long_names = reference_forecasts(cfg, layout, leads, block, ends, quantiles)
    label = f"{model} v{served_version}"
    if levels:
        quantiles[label] = (levels, served_q)
    scores, fcs, threshold, reference = score_all(cfg, t, block, lo, inits, start, end, leads,
                                                  {label: served, **refs}, layout, quantiles)
    period = f"{start}..{end}"
    summary = {"period": period, "model": model, "version": served_version, "version_label": version_label,
               "served": served_as, "leads": leads,
               "init_period": [str(t.time[inits[0]].date()), str(t.time[inits[-1]].date())],
               "n_days": len(fcs[label].valid), "n_windows": int(len(inits)),
               "n_requests": counter.n_requests, "batch_size": batch, "scores": scores,
               "quantile_levels": list(levels), "brier_reference": reference}
    summary["best_reference"], summary["skill_vs_best_reference"] = skill_vs_best_reference(scores)
    shown = [label, *(n for n in refs if n in quantiles)] if levels else None  # the probabilistic models
    table = score_table(scores, period, shown, reference)
    names = {int(k): str(v) for k, v in dict(t.attrs.get("basin_names", {})).items()}
    archive = archive_dataset(fcs, label, t.lat, t.lon, served_version, long_names, threshold[:, 0], names,
                              cfg.metadata.attributes())
    out = HindcastDir(Path(out_dir) if out_dir else Path(layout.hindcasts_dir) / f"{start}_{end}")
    summary["figures"] = [p.name for p in out.figures]
    figures = FigureInputs(fcs, label, context_references()["persistence"].name, summary, t,
                           {b: names.get(b, f"basin_{b}") for b in np.unique(t.basin_id).tolist() if b > 0},
                           cfg.evaluation.seasons, cfg.evaluation.figures)
    files = write_outputs(out, archive, summary, table, figures)
    return {**summary, "table": table, "files": files}


def served_levels(meta: dict[str, Any]) -> tuple[float, ...]:
    """The served version's quantile levels when it is probabilistic (and has the products
    that answer them), else () (a point version: ``serving_default`` as always)."""
    levels = tuple(float(t) for t in meta.get(QUANTILE_LEVELS) or ())
    return levels if len(levels) > 1 and meta.get("products") else ()


def score_all(cfg: Any, t: Tensors, block: Tensors, lo: int, inits: np.ndarray, start: dt.date, end: dt.date,
              leads: list[int], preds: dict[str, np.ndarray], layout: Any,
              quantiles: dict[str, tuple[tuple[float, ...], np.ndarray]] | None = None
              ) -> tuple[dict[str, Any], dict[str, ValidForecasts], np.ndarray, str]:
    """Every model's forecasts (and ``quantiles``: {name: (levels, [N_init, K, Q, H, W])} of
    the probabilistic ones) put on the valid days and scored at every lead with the
    evaluation's own ``score`` (against the persistence and climatology of the same lead; the
    probabilistic scores against each valid day's D1-or-worse threshold of the store's
    training years, :func:`soilcast.evaluation.evaluate.valid_thresholds`) and its
    probabilistic skills; (scores, forecasts, threshold [N, K, H, W], what the Brier skill is
    against)."""
    from soilcast.evaluation.evaluate import (
        CLIMATOLOGICAL_DISTRIBUTION,
        add_probabilistic_skills,
        basin_names,
        score,
        valid_thresholds,
    )
    from soilcast.evaluation.metrics import area_weights
    from soilcast.export.products import product_tables
    from soilcast.ml.models.references import context_references, probabilistic_benchmark_names

    quantiles = quantiles or {}
    valid = pd.date_range(start, end, freq="D")
    vidx = block.time.get_indexer(valid)
    first = int(inits[0]) - lo
    obs = np.asarray(block.Y[vidx, ..., 0], np.float32)
    obs = np.broadcast_to(obs[:, None], (len(vidx), len(leads), *obs.shape[1:]))

    def valid_fc(n: str, p: np.ndarray) -> ValidForecasts:
        levels, q = quantiles.get(n, ((), None))
        return ValidForecasts(on_valid_days(p, first, vidx, leads), obs, valid, tuple(leads), t.basin_id, n,
                              None if q is None else on_valid_days(q, first, vidx, leads), tuple(levels))

    fcs = {n: valid_fc(n, p) for n, p in preds.items()}
    ctx = {key: ref.name for key, ref in context_references().items()}
    weights = area_weights(t.lat, t.mask)
    basins = basin_names(layout.tensors, t.basin_id)
    clim, pers = fcs[ctx["clim"]], fcs[ctx["persistence"]]
    try:
        threshold = valid_thresholds(product_tables(cfg, t), clim)
    except ValueError as err:
        raise ValueError(f"hindcast needs the training years {cfg.split.train_years} in {layout.tensors} "
                         f"for the D1-or-worse thresholds: {err}") from None
    threshold = np.where(t.mask, threshold, np.nan)
    scores = {n: score(fc, weights, clim, pers, basins, threshold, cfg.evaluation.seasons) for n, fc in fcs.items()}
    for s in scores.values():
        s.pop("init_period", None)  # per lead different; the summary gives the init days
        s.pop("val", None)
    add_probabilistic_skills(scores)  # CRPS skill vs each probabilistic reference, Brier skill vs clim_distribution
    if CLIMATOLOGICAL_DISTRIBUTION in fcs and CLIMATOLOGICAL_DISTRIBUTION in probabilistic_benchmark_names():
        return scores, fcs, threshold, f"the {CLIMATOLOGICAL_DISTRIBUTION} reference (the training years' distribution)"
    climatological_brier_skill(scores, clim, weights, threshold, basins, cfg.evaluation.seasons)
    return scores, fcs, threshold, f"the climatological probability {CLIM_PROBABILITY}"


def write_outputs(out: HindcastDir, archive: Any, summary: dict[str, Any], table: str,
                  figures: FigureInputs | None = None) -> list[str]:
    """hindcast.nc, scores.json and scores.md, each written atomically, then the figures
    (:func:`soilcast.serving.hindcast_figures.write_figures`; none when ``figures`` is None)."""
    from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text
    from soilcast.serving.hindcast_figures import write_figures

    encoding = CF_ENCODING | (QUANTILE_ENCODING if "quantile" in archive.coords else {})
    with atomic_path(out.archive) as tmp:
        archive.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    atomic_write_json(out.scores, summary)
    atomic_write_text(out.table, table)
    drawn = write_figures(out, figures) if figures is not None else []
    return [str(p) for p in (out.archive, out.scores, out.table, *drawn)]
