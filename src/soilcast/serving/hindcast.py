"""Hindcast: forecast every day of a past period with the served model, over the API, and score it.

What an agency runs before it trusts a new model: the served version (not a local copy of the
network) forecasts each valid day ``start``..``end`` from the store's windows, in batched
Predict requests, and is scored against the observed soil moisture next to the two references
the evaluation uses (persistence, training-years climatology), overall, per season (JJAS
monsoon / rest) and per basin, with the evaluation's own scoring
(:func:`soilcast.evaluation.evaluate.score` over :mod:`soilcast.evaluation.metrics`).

Dates are VALID dates (the days scored); each forecast is issued ``lead_days`` earlier. Each
request carries as many windows as fit in half of ``serving.max_message_mb`` (and at most
``serving.max_batch``).

Outputs (default ``artifacts/hindcast/<start>_<end>/``): ``hindcast.nc`` (CF-1.8; forecast,
observed, persistence and climatology on (time, lat, lon)), ``scores.json`` and ``scores.md``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.contract import ANTECEDENT, INPUT, serving_inputs
from soilcast.data.store import Tensors

COLUMNS = ("rmse", "mae", "bias", "ubrmse", "r2", "kge", "acc", "skill_vs_climatology", "skill_vs_persistence")


def window_ends(tensors: Tensors, start: dt.date, end: dt.date, seq_len: int, lead: int) -> np.ndarray:
    """Store indices of the init days whose forecasts are valid ``start``..``end``; each must
    have ``seq_len`` days of history and an observation on its valid day."""
    if end < start:
        raise ValueError(f"hindcast period {start}..{end}: end is before start")
    time = tensors.time
    first_valid = time[seq_len - 1] + pd.Timedelta(days=lead)
    if pd.Timestamp(start) < first_valid or pd.Timestamp(end) > time[-1]:
        raise ValueError(f"hindcast period {start}..{end}: valid days must lie in {first_valid.date()}.."
                         f"{time[-1].date()} (the store holds {time[0].date()}..{time[-1].date()}; "
                         f"seq_len={seq_len}, lead={lead}, and each day needs its observation)")
    inits = pd.date_range(start, end, freq="D") - pd.Timedelta(days=lead)
    return time.get_indexer(inits).astype(np.int64)


def batch_size(seq_len: int, shape: tuple[int, int], channels: int, max_message_mb: int,
               max_batch: int | None = None) -> int:
    """Windows per request: half the gRPC message limit (so headers and outputs fit too),
    and at most the gateway's ``serving.max_batch``."""
    per_window = seq_len * shape[0] * shape[1] * channels * 4
    n = max(1, (max_message_mb << 20) // 2 // per_window)
    return n if max_batch is None else min(n, max_batch)


def request_forecasts(client: Any, block: Tensors, ends: np.ndarray, seq_len: int, antecedent: bool,
                      batch: int) -> tuple[np.ndarray, int]:
    """Forecasts [N, H, W] for the windows ending at ``ends``, ``batch`` windows per request."""
    out, n_requests = [], 0
    for i in range(0, len(ends), batch):
        inputs = serving_inputs(block.X, block.Y, ends[i : i + batch], seq_len, antecedent)
        out.append(client.predict(inputs.pop(INPUT), **inputs))
        n_requests += 1
    return np.concatenate(out), n_requests


def archive_dataset(fcs: dict[str, Any], lead: int, model: str, version: int | None,
                    long_names: dict[str, str]) -> Any:
    """All forecasts and the observations on (time = valid date, lat, lon), CF-1.8;
    ``long_names``: of the reference forecasts in ``fcs`` (every key but ``served``)."""
    import xarray as xr

    from soilcast.serving.forecast import STANDARD_NAME, crs_variable

    served = fcs["served"]
    dims = ("time", "lat", "lon")
    grid = {"grid_mapping": "crs", "units": "m3 m-3", "standard_name": STANDARD_NAME}
    data = {
        "soil_moisture": (dims, served.pred, {**grid, "long_name": f"hindcast soil moisture, {model} version {version}"}),
        "observed": (dims, served.obs, {**grid, "long_name": "observed (store) surface soil moisture"}),
    }
    data.update({name: (dims, fc.pred, {**grid, "long_name": long_names[name]})
                 for name, fc in fcs.items() if name != "served"})
    ds = xr.Dataset(data, coords={
        "time": ("time", served.valid_time, {"standard_name": "time", "long_name": "forecast valid date", "axis": "T"}),
        "lat": ("lat", served.lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", served.lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
        "forecast_reference_time": ("time", served.init_time, {"standard_name": "forecast_reference_time"}),
        "forecast_period": ((), np.float64(lead), {"standard_name": "forecast_period", "units": "days"}),
        "basin_id": (("lat", "lon"), served.basin_id, {"long_name": "basin id (0 outside the basins)"}),
    }, attrs={"Conventions": "CF-1.8", "title": "soilcast hindcast archive", "institution": "soilcast",
              "source": f"soilcast model {model} version {version} (served)", "lead_days": int(lead)})
    ds["crs"] = crs_variable()
    for name in data:
        ds[name].encoding["_FillValue"] = np.float32(np.nan)
    return ds


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def score_table(scores: dict[str, Any], period: str) -> str:
    """Markdown: per scope (overall, each season with data, each basin) one row per model."""
    names = list(scores)
    first = scores[names[0]]
    scopes = [("overall", lambda s: s["overall"])]
    scopes += [(f"season {k}", lambda s, k=k: s["seasons"][k]) for k, v in first["seasons"].items() if v["n"]]
    scopes += [(f"basin {k}", lambda s, k=k: s["basins"][k]) for k in first["basins"]]
    lines = [f"# Hindcast scores, valid {period}", "",
             "Area-weighted (cos latitude) over basin-mask cells, against the store's observed soil moisture; "
             "skill = 1 - MSE/MSE_reference; acc against the training-years climatology.", "",
             "| scope | model | n | " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    for label, pick in scopes:
        for name in names:
            m = pick(scores[name])
            lines.append(f"| {label} | {name} | {m['n']} | " + " | ".join(_cell(m.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def run_hindcast(cfg: Any, layout: Any, server: str, start: dt.date, end: dt.date, out_dir: Path | None = None,
                 root_certificates: bytes | None = None) -> dict[str, Any]:
    """Hindcast ``start``..``end`` (valid dates) on ``layout.tensors`` with the served model;
    write the scores into ``out_dir`` (default ``<layout.hindcasts_dir>/<start>_<end>``) and
    return them."""
    from dataclasses import replace

    from soilcast.data.store import open_tensors
    from soilcast.evaluation.evaluate import basin_names, score
    from soilcast.evaluation.metrics import area_weights
    from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text
    from soilcast.ml.models.references import context_references
    from soilcast.ml.predict import Forecasts
    from soilcast.serving.client import SoilcastClient
    from soilcast.serving.forecast import check_compatible

    t = open_tensors(layout.tensors, load=False)
    with SoilcastClient(server, cfg.serving.model_name, root_certificates=root_certificates,
                        max_message_bytes=cfg.serving.max_message_mb << 20) as client:
        meta = client.metadata()
        check_compatible(meta, t)
        L, lead, antecedent = int(meta["seq_len"]), int(meta["lead_days"]), bool(meta.get(ANTECEDENT))
        ends = window_ends(t, start, end, L, lead)
        lo, hi = int(ends[0]) - L + 1, int(ends[-1]) + lead + 1
        block = replace(t, X=np.asarray(t.X[lo:hi]), Y=np.asarray(t.Y[lo:hi]), time=t.time[lo:hi])
        batch = batch_size(L, t.mask.shape, len(t.variables) + int(antecedent), cfg.serving.max_message_mb,
                           cfg.serving.max_batch)
        pred, n_requests = request_forecasts(client, block, ends - lo, L, antecedent, batch)
        version = client.last_version
    Y = np.asarray(t.Y)
    loaded = replace(t, Y=Y)
    valid = t.time[ends + lead]
    common = dict(obs=Y[ends + lead, ..., 0], valid_time=valid, init_time=t.time[ends], mask=t.mask,
                  lat=t.lat, lon=t.lon, basin_id=t.basin_id)
    model = str(meta.get("model", "served"))

    def masked(a: np.ndarray) -> np.ndarray:
        return np.where(t.mask, a, np.nan).astype(np.float32)

    # the references the scores are taken against (persistence, climatology), by context key
    refs = context_references()
    fcs = {"served": Forecasts(pred=masked(pred), model=model, **common)}
    for ref in refs.values():
        try:
            fcs[ref.name] = Forecasts(pred=masked(ref.forecast(cfg, loaded, ends, lead)), model=ref.name, **common)
        except ValueError as err:
            raise ValueError(f"hindcast needs the training years {cfg.split.train_years} in the store for the "
                             f"{ref.name} reference: {err}") from None
    weights = area_weights(t.lat, t.mask)
    basins = basin_names(layout.tensors, t.basin_id)
    label = f"{model} v{version}"
    clim, pers = fcs[refs["clim"].name], fcs[refs["persistence"].name]
    scores = {(label if k == "served" else k): score(fc, weights, clim, pers, basins) for k, fc in fcs.items()}
    period = f"{start}..{end}"
    table = score_table(scores, period)
    from soilcast.layout import HindcastDir

    out = HindcastDir(Path(out_dir) if out_dir else Path(layout.hindcasts_dir) / f"{start}_{end}")
    with atomic_path(out.archive) as tmp:
        archive_dataset(fcs, lead, model, version, {r.name: r.long_name for r in refs.values()}).to_netcdf(
            tmp, engine="h5netcdf")
    summary = {"period": period, "model": model, "version": version, "lead_days": lead,
               "n_days": int(len(ends)), "n_requests": n_requests, "batch_size": batch, "scores": scores}
    atomic_write_json(out.scores, summary)
    atomic_write_text(out.table, table)
    return {**summary, "table": table, "files": [str(p) for p in (out.archive, out.scores, out.table)]}
