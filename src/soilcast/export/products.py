"""What forecasters read, computed inside the exported graph (``forecast_products``).

Every client (gRPC, REST, the CLI, a GIS plug-in) gets the same basin means, anomalies,
percentiles and drought classes because they are part of the SavedModel, not of each
client. The tables are fitted here from the store's TRAINING years only:

* ``basins``: the sorted nonzero basin ids, and a membership matrix [H*W, n_basins] holding
  each mask cell's cos(latitude) weight in its basin's column (basin mean = weighted sum /
  weight of the cells with a finite forecast);
* ``climatology`` [366, H, W]: :class:`soilcast.ml.models.references.Climatology` (the same
  one evaluation scores against), indexed by the valid day's calendar bin;
* ``quantiles`` [73, 21, H, W]: per 5-day calendar bin (bin ``doy // 5``; the last bin holds
  days 360-365) and mask cell, the 0, 5, ..., 100 % quantiles of training-years soil moisture
  on the days within ``climatology.window_days // 2`` of that bin's days (circular). On
  73 bins x 21 quantiles the table costs 73 * 21 * H * W * 4 bytes (6.1 kB per cell: 7.9 MB
  for a 36 x 36 grid), against 366 bins that would be five times that.

The percentile is the piecewise-linear position of the forecast between those quantiles
(0 below the minimum, 100 above the maximum); the drought class follows
:data:`soilcast.contract.DROUGHT_CLASSES`. The tables are layer weights (non-trainable), so
they land in the SavedModel's variables, not in the graph proto.

A probabilistic model also hands the layer its quantile fields ``q`` [b, K, Q, H, W] (levels
given once to :func:`products_layer`), and the products gain:

* ``quantiles``: ``q`` itself, as received (the model already made it NaN outside the mask);
* ``drought_probability`` [b, K, n_basins]: the expected share of the basin's area in D1 or
  worse. Per mask cell, ``p = P(Y <= t20)`` under the piecewise-linear distribution of its
  quantiles (:func:`soilcast.quantiles.quantile_cdf`, the one CDF evaluation scores with),
  where ``t20`` is the :data:`soilcast.contract.D1_OR_WORSE_PERCENTILE` (20 %) entry of the
  ``quantiles`` table above for the lead's valid day (:func:`d1_threshold`, the same event
  the Brier score of evaluation is about). Then the cos(latitude) area-weighted mean of
  ``p`` over the basin's cells whose every quantile and threshold are finite (the
  membership matrix of ``basin_mean``); NaN for a basin with no such cell. It is a mean of
  per-cell probabilities, not the probability that the basin mean is in drought.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from soilcast.contract import (
    ANOMALY,
    BASIN_MEAN,
    D1_OR_WORSE_PERCENTILE,
    DROUGHT_CLASS,
    DROUGHT_PROBABILITY,
    DROUGHT_UPPER,
    OUTPUT,
    PERCENTILE,
    QUANTILES,
)
from soilcast.ml.seasonal import (  # noqa: F401 (the products' tables, re-exported for their readers)
    N_QUANTILE_BINS,
    QUANTILE_DAYS,
    QUANTILE_LEVELS,
    quantile_bin,
    seasonal_quantiles,
)
from soilcast.quantiles import check_levels, quantile_cdf

# Row of the ``quantiles`` table that bounds "D1 or worse" (the 20 % quantile).
D1_INDEX = int(np.flatnonzero(np.isclose(QUANTILE_LEVELS, D1_OR_WORSE_PERCENTILE))[0])


@dataclass(frozen=True)
class ProductTables:
    """The constants of the products graph (numpy; see the module docstring)."""

    basin_ids: np.ndarray  # [K] int
    membership: np.ndarray  # [H*W, K] float32 cos-lat weight of each mask cell in its basin
    climatology: np.ndarray  # [366, H, W] float32
    quantiles: np.ndarray  # [73, 21, H, W] float32, NaN outside the mask

    @property
    def nbytes(self) -> int:
        return int(self.membership.nbytes + self.climatology.nbytes + self.quantiles.nbytes)


def basin_membership(basin_id: np.ndarray, mask: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted basin ids, [H*W, K] cos-latitude weight of each mask cell in its basin)."""
    basin_id = np.asarray(basin_id)
    mask = np.asarray(mask, bool)
    ids = np.array(sorted(int(b) for b in np.unique(basin_id[mask]) if b != 0), dtype=np.int64)
    if ids.size == 0:
        raise ValueError("forecast products: the basin-id raster has no nonzero id inside the mask")
    w = np.where(mask, np.cos(np.deg2rad(np.asarray(lat, np.float64)))[:, None], 0.0)
    member = (basin_id.ravel()[:, None] == ids[None, :]) * w.ravel()[:, None]
    return ids, member.astype(np.float32)


def d1_threshold(tables: ProductTables, doy: Any) -> np.ndarray:
    """[..., H, W] soil moisture at the D1-or-worse percentile (20 %) of the training
    distribution of each valid day ``doy`` (0-based leap-calendar days, any shape): the
    event threshold of ``drought_probability`` and of evaluation's Brier score, one table
    and one row for both so serving and scoring mean the same drought."""
    return tables.quantiles[quantile_bin(np.asarray(doy, np.int64)), D1_INDEX]


def product_tables(cfg: Any, tensors: Any) -> ProductTables:
    """Fit the tables from the store's training years (cfg.split.train_years)."""
    from soilcast.ml.models.references import Climatology
    from soilcast.ml.windows import split_slice

    time = tensors.time
    sl = split_slice(time, cfg.split.train_years)
    Y = np.asarray(tensors.Y[sl], np.float32)
    Y = Y[..., 0] if Y.ndim == 4 else Y
    if Y.shape[0] == 0:
        lo, hi = cfg.split.train_years
        raise ValueError(f"forecast products: the tensor store has no days in train years {lo}-{hi}")
    mask = np.asarray(tensors.mask, bool)
    clim = Climatology.fit(tensors.Y, time, cfg.split.train_years, cfg.climatology.window_days).values
    ids, member = basin_membership(tensors.basin_id, mask, tensors.lat)
    quants = seasonal_quantiles(np.where(mask, Y, np.nan), time[sl], mask, cfg.climatology.window_days)
    return ProductTables(ids, member, np.where(mask, clim, np.nan).astype(np.float32), quants)


def products_layer(tables: ProductTables, levels: Sequence[float] | None = None) -> Any:
    """A Keras layer holding the tables as non-trainable weights, callable in the graph.

    ``levels``: the quantile levels of the ``q`` a probabilistic model passes to ``call``
    (ascending, holding 0.5); None for a point model (``call`` then refuses ``q``)."""
    import keras
    from keras import ops

    taus = None if levels is None else check_levels(levels)

    class ForecastProducts(keras.layers.Layer):
        """(soil_moisture [b, K, H, W], valid_day_of_year [b, K] int32[, quantiles
        [b, K, Q, H, W]]) -> the products dict, every output per lead (each lead is scored
        against its own valid day's tables)."""

        def __init__(self) -> None:
            super().__init__(name="forecast_products", dtype="float32", trainable=False)
            self.member = self._const("basin_membership", tables.membership)
            self.clim = self._const("climatology", tables.climatology)
            self.quant = self._const("seasonal_quantiles", tables.quantiles)
            self.step = float(QUANTILE_LEVELS[1] - QUANTILE_LEVELS[0])
            self.built = True

        def _const(self, name: str, value: np.ndarray) -> Any:
            w = self.add_weight(shape=value.shape, initializer="zeros", trainable=False, name=name,
                                dtype="float32")
            w.assign(np.asarray(value, np.float32))
            return w

        def call(self, y: Any, doy: Any, q: Any = None) -> dict[str, Any]:
            b, k, h, w = ops.shape(y)[0], y.shape[1], y.shape[2], y.shape[3]
            days = ops.reshape(doy, (-1,))
            flat = self._fields(ops.reshape(y, (-1, h, w)), days)
            if q is not None:
                flat.update(self._probabilistic(ops.reshape(q, (-1, *q.shape[2:])), days))
            return {name: ops.reshape(v, (b, k, *v.shape[1:])) for name, v in flat.items()}

        def _basin_mean(self, value: Any, ok: Any) -> Any:
            """[n, n_basins] area-weighted mean of ``value`` [n, H, W] over the cells where
            ``ok``; 0/0 -> NaN for a basin with none."""
            n, h, w = ops.shape(value)[0], value.shape[1], value.shape[2]
            flat = ops.reshape(ops.where(ok, value, 0.0), (n, h * w))
            weight = ops.matmul(ops.reshape(ops.cast(ok, "float32"), (n, h * w)), self.member)
            return ops.matmul(flat, self.member) / weight

        def _tables_of(self, doy: Any) -> Any:
            """[n, 21, H, W] percentile table of each valid day."""
            return ops.take(self.quant, ops.minimum(doy // QUANTILE_DAYS, N_QUANTILE_BINS - 1), axis=0)

        def _fields(self, y: Any, doy: Any) -> dict[str, Any]:
            """The products of [n, H, W] fields, each with its own valid day [n]."""
            y = ops.cast(y, "float32")
            doy = ops.cast(doy, "int32")
            finite = ops.isfinite(y)
            basin_mean = self._basin_mean(y, finite)
            anomaly = y - ops.take(self.clim, doy, axis=0)
            q = self._tables_of(doy)
            lo, hi = q[:, :-1], q[:, 1:]  # [b, 20, H, W]
            yy = y[:, None]
            width = hi - lo
            safe = ops.where(width > 0, width, 1.0)
            frac = ops.where(width > 0, ops.clip((yy - lo) / safe, 0.0, 1.0),
                             ops.cast(yy >= hi, "float32"))
            pct = ops.sum(frac, axis=1) * self.step
            ok = finite & ops.all(ops.isfinite(q), axis=1)
            pct = ops.where(ok, pct, float("nan"))
            passed = sum(ops.cast(pct > bound, "int32") for bound in DROUGHT_UPPER)
            cls = ops.where(ok, 4 - passed, -1)
            return {OUTPUT: y, BASIN_MEAN: basin_mean, ANOMALY: anomaly, PERCENTILE: pct,
                    DROUGHT_CLASS: ops.cast(cls, "int32")}

        def _probabilistic(self, q: Any, doy: Any) -> dict[str, Any]:
            """The quantiles [n, Q, H, W] passed through and the basins' drought probability
            (module docstring), each field with its own valid day [n]."""
            if taus is None:
                raise ValueError("forecast products: quantiles passed to a layer built without levels")
            if q.shape[1] != len(taus):
                raise ValueError(f"forecast products: {q.shape[1]} quantile fields for {len(taus)} levels")
            q = ops.cast(q, "float32")
            t20 = self._tables_of(ops.cast(doy, "int32"))[:, D1_INDEX]  # [n, H, W]
            ok = ops.all(ops.isfinite(q), axis=1) & ops.isfinite(t20)
            safe_q = ops.where(ops.isfinite(q), q, 0.0)
            p = quantile_cdf(safe_q, taus, ops.where(ok, t20, 0.0), axis=1, xp=ops)
            return {QUANTILES: q, DROUGHT_PROBABILITY: self._basin_mean(p, ok)}

    return ForecastProducts()


def products_numpy(y: np.ndarray, doy: np.ndarray, tables: ProductTables, q: np.ndarray | None = None,
                   levels: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The same products in numpy (independent reference for tests and light clients):
    ``y`` [b, K, H, W] with ``doy`` [b, K] (and ``q`` [b, K, Q, H, W]), or one lead's ``y``
    [b, H, W] with ``doy`` [b] (and ``q`` [b, Q, H, W]). With ``q`` (at ``levels``) also
    ``quantiles`` and ``drought_probability``."""
    y = np.asarray(y, np.float64)
    doy = np.asarray(doy, np.int64)
    if y.ndim == 4:
        b, k = y.shape[:2]
        qq = None if q is None else np.asarray(q).reshape(b * k, *np.shape(q)[2:])
        flat = products_numpy(y.reshape(b * k, *y.shape[2:]), doy.reshape(-1), tables, qq, levels)
        return {name: v.reshape(b, k, *v.shape[1:]) for name, v in flat.items()}
    from soilcast.contract import drought_class

    bm = _basin_mean_numpy(y, tables.membership)
    qt = tables.quantiles[quantile_bin(doy)].astype(np.float64)  # [b, 21, H, W]
    pct = np.full(y.shape, np.nan)
    for i in range(len(y)):
        for r, c in zip(*np.nonzero(np.isfinite(y[i]) & np.isfinite(qt[i]).all(axis=0))):
            xs = qt[i, :, r, c]
            v = y[i, r, c]
            pct[i, r, c] = 0.0 if v < xs[0] else 100.0 if v >= xs[-1] else np.interp(v, xs, QUANTILE_LEVELS)
    out = {OUTPUT: y, BASIN_MEAN: bm, ANOMALY: y - tables.climatology[doy], PERCENTILE: pct,
           DROUGHT_CLASS: drought_class(pct)}
    if q is not None:
        out.update(_probabilistic_numpy(np.asarray(q, np.float64), doy, tables, levels))
    return out


def _basin_mean_numpy(value: np.ndarray, membership: np.ndarray) -> np.ndarray:
    """[n, n_basins] area-weighted mean of ``value`` [n, H, W] over each basin's finite cells."""
    member = membership.astype(np.float64)
    fin = np.isfinite(value).reshape(len(value), -1)
    with np.errstate(all="ignore"):
        return (np.where(fin, value.reshape(len(value), -1), 0.0) @ member) / (fin @ member)


def _probabilistic_numpy(q: np.ndarray, doy: np.ndarray, tables: ProductTables,
                         levels: Sequence[float] | None) -> dict[str, np.ndarray]:
    """``quantiles`` and ``drought_probability`` of one lead's q [n, Q, H, W]."""
    if levels is None:
        raise ValueError("products_numpy: quantiles given without their levels")
    taus = check_levels(levels)
    if q.shape[1] != len(taus):
        raise ValueError(f"products_numpy: {q.shape[1]} quantile fields for {len(taus)} levels")
    p = quantile_cdf(q, taus, d1_threshold(tables, doy).astype(np.float64), axis=1)  # NaN where undefined
    return {QUANTILES: q, DROUGHT_PROBABILITY: _basin_mean_numpy(p, tables.membership)}
