"""The strong simple reference: a per-cell ridge regression, fitted on the training years.

For every mask cell, the forecast target of the network (the scaled increment or state,
``window.target``) is regressed on every input channel of the last ``lags`` days (the same
standardised inputs the networks read, the constant mask channel left out) plus an
intercept. It has no spatial context and no nonlinearity, so a network that cannot beat it
is not earning its compute. Solved exactly from the normal equations, cell by cell in one
batched ``numpy.linalg.solve``; the intercept is not penalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soilcast.config import Config
from soilcast.data.store import Tensors
from soilcast.ml.models.references import Reference, register_reference
from soilcast.ml.windows import Prepared, split_ends


def _features(data: Prepared, ends: np.ndarray, lags: int) -> np.ndarray:
    """[N, H, W, lags*C + 1]: inputs of days t-lags+1..t (mask channel dropped) and a 1."""
    x = data.Xs[..., :-1]
    cols = [x[ends - k] for k in range(lags)]
    cols.append(np.ones(cols[0].shape[:-1] + (1,), dtype=np.float32))
    return np.concatenate(cols, axis=-1).astype(np.float64)


@dataclass(frozen=True)
class LinearReference:
    coef: np.ndarray  # [H, W, F] float64 (last feature: intercept)
    lags: int

    @classmethod
    def fit(cls, data: Prepared, ends: np.ndarray, lags: int, ridge: float, chunk: int = 256) -> "LinearReference":
        ends = np.asarray(ends)
        if len(ends) == 0 or int(ends.min()) < lags - 1:
            raise ValueError(f"linear reference: need training windows with {lags} input days")
        F = (data.Xs.shape[-1] - 1) * lags + 1
        H, W = data.weight.shape
        gram = np.zeros((H, W, F, F))
        rhs = np.zeros((H, W, F))
        for i in range(0, len(ends), chunk):
            e = ends[i : i + chunk]
            A = _features(data, e, lags)  # [n, H, W, F]
            y = data.targets[e].astype(np.float64)  # [n, H, W]
            gram += np.einsum("nhwf,nhwg->hwfg", A, A)
            rhs += np.einsum("nhwf,nhw->hwf", A, y)
        penalty = np.full(F, float(ridge))
        penalty[-1] = 0.0  # intercept
        gram += np.diag(penalty)
        coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
        return cls(coef=coef, lags=lags)

    def predict(self, data: Prepared, ends: np.ndarray, chunk: int = 256) -> np.ndarray:
        """[N, H, W] float32 forecasts in the networks' target space."""
        ends = np.asarray(ends)
        out = [np.einsum("nhwf,hwf->nhw", _features(data, ends[i : i + chunk], self.lags), self.coef)
               for i in range(0, len(ends), chunk)]
        return np.concatenate(out).astype(np.float32)


def linear_forecast(cfg: Config, t: Tensors, ends: np.ndarray, lead: int) -> np.ndarray:
    """The ridge reference, fitted on the training years, through the serving head."""
    from keras import ops

    from soilcast.ml.predict import ForecastToPhysical
    from soilcast.ml.train import fit_scaler
    from soilcast.ml.windows import prepare

    if lead != cfg.window.lead_days:
        raise ValueError(f"linear reference: fitted for window.lead_days {cfg.window.lead_days}, asked for {lead}")
    scaler = fit_scaler(cfg, t)
    data = prepare(t, cfg, scaler)
    p = cfg.linear_reference
    ref = LinearReference.fit(data, split_ends(cfg, t.time, "train"), p.lags, p.ridge)
    z = ref.predict(data, ends)[:, None, :, :, None]  # [N, 1, H, W, 1] like a network's last step
    head = ForecastToPhysical(scaler.to_dict(), t.mask.astype(int).tolist(), list(cfg.target.physical_range))
    if scaler.target_kind == "increment":
        sm = np.asarray(t.Y[ends, ..., 0], dtype=np.float32)[:, None]
        return ops.convert_to_numpy(head([z, sm]))
    return ops.convert_to_numpy(head(z))


register_reference(Reference("linear", "per-cell ridge regression reference", linear_forecast))
