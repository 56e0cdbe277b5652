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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.contract import ANTECEDENT, INPUT, leads_of
from soilcast.data.store import Tensors
from soilcast.evaluation.metrics import METRICS

COLUMNS = tuple(name for name, m in METRICS.items() if m.leaderboard)  # as the leaderboard's
# CF-1.8 has no 64-bit integers and no fill value on coordinate variables (compliance-checker)
_DAYS = {"units": "days since 1970-01-01", "dtype": "int32"}
CF_ENCODING = {"lead_time": {"units": "days", "dtype": "int32"}, "time": _DAYS, "forecast_reference_time": _DAYS,
               "lat": {"_FillValue": None}, "lon": {"_FillValue": None}}


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
    """A gRPC ``predict`` for :class:`InputForecaster` that counts its requests."""

    client: Any
    n_requests: int = 0

    def __call__(self, x: dict[str, np.ndarray]) -> np.ndarray:
        x = dict(x)
        self.n_requests += 1
        return self.client.predict_by_lead(x.pop(INPUT), **x)


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


def reference_forecasts(cfg: Any, layout: Any, leads: list[int], block: Tensors,
                        ends: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every registered reference, fitted once on the training years of the store, at the
    served ``leads``: ``({name: [N_init, K, H, W]}, {name: long name})``. The one place the
    hindcast touches the reference registry."""
    from soilcast.ml.models.references import reference_forecasters, references
    from soilcast.ml.train import load_tensors

    ref_cfg = cfg.model_copy(update={"window": cfg.window.model_copy(update={"leads": list(leads)})})
    try:
        fitted = reference_forecasters(ref_cfg, load_tensors(ref_cfg, layout.tensors))
    except ValueError as err:
        raise ValueError(f"hindcast needs the training years {cfg.split.train_years} in {layout.tensors} "
                         f"to fit the references: {err}") from None
    long_names = {n: r.long_name for n, r in references().items()}
    return {n: f.forecast(block, ends) for n, f in fitted.items()}, {n: long_names[n] for n in fitted}


def archive_dataset(fcs: dict[str, ValidForecasts], served: str, lat: np.ndarray, lon: np.ndarray,
                    version: int | None, long_names: dict[str, str]) -> Any:
    """The served forecast (key ``served``) and every reference on (time = valid date,
    lead_time, lat, lon) and the observations on (time, lat, lon), CF-1.8."""
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


def score_table(scores: dict[str, Any], period: str) -> str:
    """Markdown: the skill against the best reference at each lead, then per scope (overall,
    each season with data, each basin) one row per model and lead; the columns are the
    leaderboard metrics of the registry."""
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
    from soilcast.forecasting import InputForecaster
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
        counter = RequestCounter(client)
        model = str(meta.get("model", "served"))
        served = InputForecaster(model, tuple(leads), counter, L, antecedent, batch).forecast(block, inits - lo)
        version = client.last_version
    refs, long_names = reference_forecasts(cfg, layout, leads, block, inits - lo)
    label = f"{model} v{version}"
    scores, fcs = score_all(t, block, lo, inits, start, end, leads, {label: served, **refs}, layout)
    period = f"{start}..{end}"
    table = score_table(scores, period)
    summary = {"period": period, "model": model, "version": version, "leads": leads,
               "init_period": [str(t.time[inits[0]].date()), str(t.time[inits[-1]].date())],
               "n_days": len(fcs[label].valid), "n_windows": int(len(inits)),
               "n_requests": counter.n_requests, "batch_size": batch, "scores": scores}
    summary["best_reference"], summary["skill_vs_best_reference"] = skill_vs_best_reference(scores)
    archive = archive_dataset(fcs, label, t.lat, t.lon, version, long_names)
    files = write_outputs(layout, out_dir, start, end, archive, summary, table)
    return {**summary, "table": table, "files": files}


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
    with atomic_path(out.archive) as tmp:
        archive.to_netcdf(tmp, engine="h5netcdf", encoding=CF_ENCODING)
    atomic_write_json(out.scores, summary)
    atomic_write_text(out.table, table)
    return [str(p) for p in (out.archive, out.scores, out.table)]
