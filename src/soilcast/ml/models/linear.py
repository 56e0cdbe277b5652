"""The strong simple reference: a per-cell ridge regression, fitted on the training years.

For every mask cell and lead, the forecast target of the network (the scaled increment or
state, ``window.target``) is regressed on every input channel of the last ``lags`` days (the
same standardised inputs the networks read, the constant mask channel left out) plus an
intercept. The leads share one Gram matrix (the features do not depend on the lead), so
fitting all K leads costs one solve with K right-hand sides. It has no spatial context and no nonlinearity, so a network that cannot beat it
is not earning its compute. Solved exactly from the normal equations, cell by cell in one
batched ``numpy.linalg.solve``; the intercept is not penalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soilcast.config import Config
from soilcast.data.store import Tensors
from soilcast.forecasting import Forecaster
from soilcast.ml.models.references import Reference, register_reference
from soilcast.ml.scaling import Scaler
from soilcast.ml.windows import Prepared, split_ends


def _features(data: Prepared, ends: np.ndarray, lags: int) -> np.ndarray:
    """[N, H, W, lags*C + 1]: inputs of days t-lags+1..t (mask channel dropped) and a 1."""
    x = data.Xs[..., :-1]
    cols = [x[ends - k] for k in range(lags)]
    cols.append(np.ones(cols[0].shape[:-1] + (1,), dtype=np.float32))
    return np.concatenate(cols, axis=-1).astype(np.float64)


@dataclass(frozen=True)
class LinearReference:
    coef: np.ndarray  # [H, W, F, K] float64 (last feature: intercept; last axis: the leads)
    lags: int

    @classmethod
    def fit(cls, data: Prepared, ends: np.ndarray, lags: int, ridge: float, chunk: int = 256) -> "LinearReference":
        ends = np.asarray(ends)
        if len(ends) == 0 or int(ends.min()) < lags - 1:
            raise ValueError(f"linear reference: need training windows with {lags} input days")
        F = (data.Xs.shape[-1] - 1) * lags + 1
        H, W = data.weight.shape
        K = data.targets.shape[-1]
        gram = np.zeros((H, W, F, F))
        rhs = np.zeros((H, W, F, K))
        for i in range(0, len(ends), chunk):
            e = ends[i : i + chunk]
            A = _features(data, e, lags)  # [n, H, W, F]
            y = data.targets[e].astype(np.float64)  # [n, H, W, K]
            gram += np.einsum("nhwf,nhwg->hwfg", A, A)
            rhs += np.einsum("nhwf,nhwk->hwfk", A, y)
        penalty = np.full(F, float(ridge))
        penalty[-1] = 0.0  # intercept
        gram += np.diag(penalty)
        coef = np.linalg.solve(gram, rhs)
        return cls(coef=coef, lags=lags)

    def predict(self, data: Prepared, ends: np.ndarray, chunk: int = 256) -> np.ndarray:
        """[N, H, W, K] float32 forecasts in the networks' target space."""
        ends = np.asarray(ends)
        out = [np.einsum("nhwf,hwfk->nhwk", _features(data, ends[i : i + chunk], self.lags), self.coef)
               for i in range(0, len(ends), chunk)]
        return np.concatenate(out).astype(np.float32)


@dataclass(frozen=True)
class LinearForecaster:
    """The fitted ridge reference, forecasting through the networks' serving head."""

    name: str
    leads: tuple[int, ...]
    cfg: Config
    scaler: Scaler
    model: LinearReference

    def forecast(self, block: Tensors, ends: np.ndarray) -> np.ndarray:
        from keras import ops

        from soilcast.ml.predict import ForecastToPhysical
        from soilcast.ml.windows import prepare

        ends = np.asarray(ends)
        data = prepare(block, self.cfg, self.scaler)
        z = self.model.predict(data, ends)[:, None]  # [N, 1, H, W, K] like a network's last step
        head = ForecastToPhysical(self.scaler.to_dict(), block.mask.astype(int).tolist(),
                                  list(self.cfg.target.physical_range))
        if self.scaler.target_kind == "increment":
            sm = np.asarray(block.Y[..., 0], dtype=np.float32)[ends][:, None]
            return ops.convert_to_numpy(head([z, sm]))
        return ops.convert_to_numpy(head(z))


def fit_linear(cfg: Config, t: Tensors) -> Forecaster:
    """The ridge reference fitted on the training years of ``t`` (all leads at once)."""
    from soilcast.ml.train import fit_scaler
    from soilcast.ml.windows import prepare

    scaler = fit_scaler(cfg, t)
    data = prepare(t, cfg, scaler)
    p = cfg.linear_reference
    model = LinearReference.fit(data, split_ends(cfg, t.time, "train"), p.lags, p.ridge)
    return LinearForecaster("linear", tuple(cfg.window.leads), cfg, scaler, model)


register_reference(Reference("linear", "per-cell ridge regression reference", fit_linear))
