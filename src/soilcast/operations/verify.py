"""Verification as the truth arrives: ``soilcast verify`` scores every archived forecast lead
whose valid day is now observed in the store, once.

One row of ``artifacts/operations/verification.csv`` per (archived forecast, lead, basin),
``basin`` ``all`` being every mask cell. Rows keep SUMS (cos-latitude weight, weighted squared
errors of the forecast, persistence and climatology), so any aggregate over days, leads or
basins is exact: RMSE = sqrt(sum sse / sum weight), MSE skill vs a reference = 1 - sum sse /
sum sse_reference (:func:`soilcast.operations.table.aggregate`). Persistence is the observed value of the init day;
climatology the training-years climatology of the valid day
(:class:`soilcast.ml.models.references.Climatology`, the evaluation's reference). A
probabilistic archive adds the weighted mean CRPS of the quantiles (``scoringrules``, as
the evaluation). Each row also keeps ``obs_sha256``, the hash of the observed field it was
scored against.

Rules: a (forecast, lead) already in the table is never scored again; a verified day whose
observation has changed since (the store rebuilt with revised data) is reported as REVISED,
never silently rescored; the table and the realised-skill status are rewritten atomically at
the end under the operations lock, so a killed verify leaves the old table and the next run
scores the rest once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from soilcast.operations.table import COLUMNS, derived, read_table, write_table
from soilcast.serving.realised import ALL_BASINS


@dataclass(frozen=True)
class Verified:
    """What one verify run did."""

    scored: pd.DataFrame  # the new rows
    table: pd.DataFrame  # the whole table after the run
    revised: list[str] = field(default_factory=list)  # valid days whose observation changed since scored
    last_observed: str | None = None

    @property
    def n_scored(self) -> int:
        """Forecast leads scored now (a lead has one row per basin and one for all)."""
        return int((self.scored["basin"] == ALL_BASINS).sum()) if len(self.scored) else 0


def obs_hash(field_: np.ndarray) -> str:
    """sha256 of an observed [H, W] field (float32 bytes, NaN included)."""
    return hashlib.sha256(np.ascontiguousarray(field_, np.float32).tobytes()).hexdigest()


@dataclass(frozen=True)
class Truth:
    """What verification scores against: the store's observations, persistence and climatology."""

    Y: np.ndarray  # [T, H, W]
    time: pd.DatetimeIndex
    weights: dict[str, np.ndarray]  # basin ("all", ids) -> [H, W] cos-latitude weights on its cells
    clim: Any  # Climatology, or None without training years

    @classmethod
    def of(cls, cfg: Any, tensors: Any) -> "Truth":
        from soilcast.evaluation.metrics import area_weights
        from soilcast.ml.models.references import Climatology

        Y = np.asarray(tensors.Y)[..., 0]
        w = area_weights(tensors.lat, tensors.mask)
        weights = {ALL_BASINS: w, **{str(int(b)): np.where(tensors.basin_id == b, w, 0.0)
                                      for b in np.unique(tensors.basin_id) if b != 0}}
        try:
            clim = Climatology.from_config(cfg, Y[..., None], tensors.time)
        except ValueError:
            clim = None
        return cls(Y, tensors.time, weights, clim)

    def day(self, date: pd.Timestamp) -> np.ndarray:
        return self.Y[int(self.time.get_loc(date))]

    def climatology(self, date: pd.Timestamp) -> np.ndarray:
        if self.clim is None:
            return np.full(self.Y.shape[1:], np.nan, np.float32)
        return np.asarray(self.clim.predict(pd.DatetimeIndex([date])))[0]


def score_lead(truth: Truth, forecast: np.ndarray, quantiles: np.ndarray | None, levels: list[float],
               init: pd.Timestamp, valid: pd.Timestamp) -> list[dict[str, Any]]:
    """The rows of one forecast lead: per basin and ``all``, the weighted sums and scores."""
    from soilcast.evaluation.probabilistic import crps

    obs, persistence, clim = truth.day(valid), truth.day(init), truth.climatology(valid)
    rows = []
    for basin, w in truth.weights.items():
        ok = (w > 0) & np.isfinite(forecast) & np.isfinite(obs) & np.isfinite(persistence)
        weight = float(w[ok].sum())
        if weight == 0:
            continue
        sse = float(np.sum(w[ok] * (forecast[ok] - obs[ok]) ** 2))
        sse_p = float(np.sum(w[ok] * (persistence[ok] - obs[ok]) ** 2))
        sse_c = float(np.sum(w[ok] * (clim[ok] - obs[ok]) ** 2)) if np.isfinite(clim[ok]).all() else float("nan")
        score = float("nan")
        if quantiles is not None and np.isfinite(quantiles[:, ok]).all():
            score = crps(obs[ok], quantiles[:, ok].T, levels, w[ok])
        scores = {k: float(v) for k, v in derived(sse, weight, sse_p, sse_c).items()}
        rows.append({"basin": basin, "weight": weight, "sse": sse, "sse_persistence": sse_p,
                     "sse_climatology": sse_c, "crps": score, **scores})
    return rows


def pending(archive: Any, table: pd.DataFrame, observed: pd.DatetimeIndex) -> list[tuple[int, int]]:
    """(archive index, lead) of every archived forecast lead whose valid day (and init day) is
    observed and which is not in ``table`` yet. (A lead the served version did not forecast
    is NaN in the archive and gives no row, so it stays pending at no cost.)"""
    done = set(zip(table["forecast"].astype(int), table["lead"].astype(int)))
    leads = [int(k) for k in archive["lead_time"].values]
    return [(i, k) for i, init in enumerate(pd.DatetimeIndex(archive["init_time"].values)) if init in observed
            for k in leads if (i, k) not in done and init + pd.Timedelta(days=k) in observed]


def revised_days(truth: Truth, table: pd.DataFrame) -> list[str]:
    """Valid days scored against an observation that has since changed (still in the store)."""
    out = []
    for day, digest in table.groupby("valid_date")["obs_sha256"].first().items():
        stamp = pd.Timestamp(day)
        if stamp in truth.time and obs_hash(truth.day(stamp)) != digest:
            out.append(str(day))
    return out


def score_pending(archive: Any, truth: Truth, todo: list[tuple[int, int]]) -> pd.DataFrame:
    """Rows (:data:`COLUMNS`) of the forecast leads in ``todo``."""
    leads = [int(k) for k in archive["lead_time"].values]
    has_q = "soil_moisture_quantiles" in archive
    levels = [float(t) for t in archive["quantile"].values] if has_q else []
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    digests: dict[pd.Timestamp, str] = {}  # one hash per valid day, shared by its forecasts and leads
    rows = []
    for i in sorted({i for i, _ in todo}):
        entry = archive.isel(forecast=i).load()
        init = pd.Timestamp(entry["init_time"].values)
        for lead in sorted(k for j, k in todo if j == i):
            k = leads.index(lead)
            valid = init + pd.Timedelta(days=lead)
            q = entry["soil_moisture_quantiles"].values[k] if has_q else None
            if valid not in digests:
                digests[valid] = obs_hash(truth.day(valid))
            meta = {"forecast": i, "init_date": str(init.date()), "label": str(entry["label"].values),
                    "version": int(entry["version"].values), "lead": lead, "valid_date": str(valid.date()),
                    "month": valid.strftime("%Y-%m"), "verified_at": now,
                    "obs_sha256": digests[valid]}
            rows += [{**meta, **r} for r in score_lead(truth, entry["soil_moisture"].values[k], q, levels, init, valid)]
    return pd.DataFrame(rows, columns=COLUMNS)


def verify(cfg: Any, layout: Any) -> Verified:
    """Score every archived forecast lead whose valid day the store now holds (once), write
    the table and the realised-skill status; under the operations lock."""
    from soilcast.data.store import open_tensors
    from soilcast.operations.archive import open_archive, operations_lock
    from soilcast.operations.realised import refresh_status

    ops = layout.operations
    with operations_lock(ops.root):
        tensors = open_tensors(layout.tensors, load=False)
        table = read_table(ops.verification)
        archive = open_archive(ops.archive)
        truth = Truth.of(cfg, tensors)
        revised = revised_days(truth, table)
        todo = pending(archive, table, tensors.time) if archive is not None else []
        scored = score_pending(archive, truth, todo) if todo else pd.DataFrame(columns=COLUMNS)
        if len(scored):
            table = pd.concat([table, scored], ignore_index=True) if len(table) else scored
            write_table(ops.verification, table)
        last = str(tensors.time[-1].date())
        refresh_status(cfg, layout, archive, table, last)
    return Verified(scored, table, revised, last)
