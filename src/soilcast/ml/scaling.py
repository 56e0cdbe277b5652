"""Scaling between canonical physical units and the networks' space.

Why this shape:

* Statistics are fitted on the TRAINING years only (no leakage from validation/test years)
  and saved with each run as ``scaling.json`` so evaluation and serving apply exactly what
  training applied. Inputs use every finite cell of the grid (the networks read weather
  over the whole grid); the target uses MASK cells only (it is only defined there).
* Inputs are standardised per variable, first through the variable's ``transform`` in
  params (``log1p`` for precipitation: it is heavy-tailed and mostly zero). The one fill rule for cells the source does not cover:
  a non-finite standardised input becomes 0, the training-years mean.
* The soil-moisture STATE is min-max scaled into ``cfg.scaling.target_range`` (e.g.
  [-0.9, 0.9]): the ConvLSTM's output layer is a ``ConvLSTM2D`` with its default ``tanh``
  activation, whose range is the open interval (-1, 1). Keeping the training range strictly
  inside leaves head-room for values slightly beyond the training extremes.
* The INCREMENT ``Y[t+lead] - Y[t]`` (``window.target: increment``) is divided by its
  training-years spread AT THAT LEAD, ``cfg.scaling.increment_sd`` standard deviations (over
  mask cells): the change over 7 days spreads wider than over one, and one scale per lead
  keeps every lead's target in the same part of tanh's range, so the loss (a mean over
  leads in this scaled space) weighs each lead by its own predictable spread.
  Zero stays zero (a zero output is persistence). The scale is a trade-off for the tanh
  output of the ConvLSTM: soil-moisture jumps after rain reach ~24 standard deviations but
  are unforecastable from the past (the best forecasts, e.g. the ridge reference's, stay
  within ~3), and scaling by the largest jump squeezes the common changes towards 0, where
  training was measured to learn far more slowly.
* Every transform takes an array module ``xp``: ``numpy`` for arrays, ``keras.ops`` for
  tensors, so the SAME code runs in the data pipeline and inside the exported graph.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import Config


@dataclass(frozen=True)
class Scaler:
    """Per-variable statistics; plain floats so it serialises to JSON losslessly."""

    variables: tuple[str, ...]
    log1p: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target: str
    target_min: float
    target_max: float
    target_range: tuple[float, float]
    train_years: tuple[int, int]
    target_kind: str  # "increment" | "state" (cfg.window.target)
    leads: tuple[int, ...]  # the lead axis (cfg.window.leads)
    increment_scale: tuple[float, ...]  # m3/m3 per scaled unit of the increment, per lead

    # ----------------------------------------------------------------- fitting
    @classmethod
    def fit(
        cls, X: np.ndarray, Y: np.ndarray, mask: np.ndarray, train: slice, cfg: Config
    ) -> "Scaler":
        """Fit on ``X[train]``/``Y[train]`` over ``mask`` cells (float64, chunked in time)."""
        names = cfg.variable_names
        if X.shape[-1] != len(names):
            raise ValueError(f"X has {X.shape[-1]} channels, config names {len(names)}: {names}")
        log1p = tuple(v.transform == "log1p" for v in cfg.variables)
        everywhere = np.ones_like(np.asarray(mask, dtype=bool))
        mean, std = _masked_moments(X, everywhere, train, np.asarray(log1p))
        ymin, ymax = _masked_range(Y, mask, train)
        if not ymax > ymin:
            raise ValueError(f"target {cfg.target.name} is constant over the training years")
        leads = tuple(cfg.window.leads)
        step_sd = [_increment_sd(Y, mask, train, lead) for lead in leads]
        if not all(sd > 0 for sd in step_sd):
            raise ValueError(f"target {cfg.target.name} never changes over the training years")
        return cls(
            variables=tuple(names),
            log1p=log1p,
            mean=tuple(float(m) for m in mean),
            std=tuple(float(s) if s > 0 else 1.0 for s in std),
            target=cfg.target.name,
            target_min=float(ymin),
            target_max=float(ymax),
            target_range=tuple(float(v) for v in cfg.scaling.target_range),
            train_years=tuple(cfg.split.train_years),
            target_kind=cfg.window.target,
            leads=leads,
            increment_scale=tuple(float(sd * cfg.scaling.increment_sd) for sd in step_sd),
        )

    # ----------------------------------------------------------- serialising
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Scaler":
        fields = dict(d)
        for k in ("variables", "log1p", "mean", "std", "target_range", "train_years", "leads", "increment_scale"):
            fields[k] = tuple(fields[k])
        return cls(**fields)

    def save(self, path: Path) -> None:
        from soilcast.io.atomic import atomic_write_json

        atomic_write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: Path) -> "Scaler":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: scaling file not found (train the model first)")
        return cls.from_dict(json.loads(path.read_text()))

    # ------------------------------------------------------------ transforms
    def scale_inputs(self, x: Any, xp: Any = np) -> Any:
        """Physical [..., C] -> standardised (log1p first where configured)."""
        mean, std, logc = _consts(self, xp, x)
        x = xp.where(logc, xp.log1p(xp.maximum(x, 0.0)), x)
        xs = (x - mean) / std
        return xp.where(xp.isfinite(xs), xs, xp.zeros_like(xs))  # uncovered cells: the mean

    def unscale_inputs(self, xs: Any, xp: Any = np) -> Any:
        mean, std, logc = _consts(self, xp, xs)
        x = xs * std + mean
        return xp.where(logc, xp.expm1(xp.where(logc, x, 0.0)), x)  # no overflow elsewhere

    def scale_target(self, y: Any, xp: Any = np) -> Any:
        """Physical m3/m3 -> ``target_range`` (min-max on the training range)."""
        lo, hi = self.target_range
        return lo + (y - self.target_min) * ((hi - lo) / (self.target_max - self.target_min))

    def unscale_target(self, ys: Any, xp: Any = np) -> Any:
        lo, hi = self.target_range
        return self.target_min + (ys - lo) * ((self.target_max - self.target_min) / (hi - lo))

    def scale_increment(self, d: Any) -> Any:
        """Changes in m3/m3 [..., K] (last axis: the leads) -> scaled increments (0 stays 0)."""
        return d * (1.0 / np.asarray(self.increment_scale, dtype=np.float32))

    def unscale_increment(self, z: Any) -> Any:
        """Scaled increments [..., K] (last axis: the leads) -> m3/m3."""
        return z * np.asarray(self.increment_scale, dtype=np.float32)


def _consts(s: Scaler, xp: Any, like: Any) -> tuple[Any, Any, Any]:
    mean = np.asarray(s.mean, dtype=np.float32)
    std = np.asarray(s.std, dtype=np.float32)
    logc = np.asarray(s.log1p, dtype=bool)
    if xp is np:
        return mean, std, logc
    return xp.convert_to_tensor(mean), xp.convert_to_tensor(std), xp.convert_to_tensor(logc)


def mask_fill(x: Any, mask: Any, fill: float = 0.0, xp: Any = np) -> Any:
    """Replace cells outside ``mask`` ([H, W], broadcast over [..., H, W, C]) by ``fill``.

    ``where`` (not multiplication) so NaN outside the mask cannot leak into the result.
    """
    m = mask[..., None] if len(getattr(mask, "shape", ())) == 2 else mask
    return xp.where(m, x, xp.full_like(x, fill))


def _masked_moments(
    X: np.ndarray, mask: np.ndarray, train: slice, logc: np.ndarray, chunk: int = 366
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean/std over the finite values of (train days x ``mask`` cells), two
    passes in float64 (NaN = a cell the source does not cover, left out)."""
    idx = range(*train.indices(X.shape[0]))
    chunks = [slice(i, min(i + chunk, idx.stop)) for i in range(idx.start, idx.stop, chunk)]

    def cells(sl: slice) -> np.ndarray:
        v = np.asarray(X[sl], dtype=np.float64)[:, mask]  # [t, cells, C]
        return np.where(logc, np.log1p(np.maximum(v, 0.0)), v)

    n, s = np.zeros(X.shape[-1]), np.zeros(X.shape[-1])
    for sl in chunks:
        v = cells(sl)
        n += np.isfinite(v).sum(axis=(0, 1))
        s += np.nansum(v, axis=(0, 1))
    if not np.all(n > 0):
        raise ValueError("no finite training value to fit the input scaling on")
    mean = s / n
    ss = np.zeros_like(mean)
    for sl in chunks:
        ss += np.nansum((cells(sl) - mean) ** 2, axis=(0, 1))
    return mean, np.sqrt(ss / n)


def _increment_sd(Y: np.ndarray, mask: np.ndarray, train: slice, lead: int) -> float:
    """Standard deviation of Y[t+lead] - Y[t] (both days in the training years), mask cells."""
    v = np.asarray(Y[train], dtype=np.float64)[:, mask]
    v = v[..., 0] if v.ndim == 3 else v
    if v.shape[0] <= lead:
        raise ValueError(f"training years hold {v.shape[0]} days: no {lead}-day increment")
    return float(np.std(v[lead:] - v[:-lead]))


def _masked_range(Y: np.ndarray, mask: np.ndarray, train: slice) -> tuple[float, float]:
    v = np.asarray(Y[train], dtype=np.float64)[:, mask]
    if not np.all(np.isfinite(v)):
        raise ValueError("NaN inside the mask in the training target: cannot fit scaling")
    return float(v.min()), float(v.max())
