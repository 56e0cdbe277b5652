"""Samples, chronological splits and the streaming batch pipeline.

A sample ending at day index ``t`` is the input window ``X[t-L+1 .. t]`` (``L`` =
``cfg.window.seq_len``) with K targets per input day ``s``, one per lead ``k`` of
``cfg.window.leads`` (the lead axis is the LAST axis of targets and network outputs):
``Y[s+k]`` (``window.target: state``) or the increment ``Y[s+k] - Y[s]`` (``increment``,
always relative to the last observed day ``s``). The forecast is the last step, valid at
``t+k`` for each lead. Every network is causal (step ``s`` reads inputs up to ``s``), so the
earlier steps are extra training signal, never a peek at the answer.

Input channels: the weather variables (standardised, over the whole grid), then the
antecedent soil moisture (scaled state, 0 outside the mask) when configured, then the basin
mask itself (1 inside, 0 outside), so a network knows where its output is scored. A window belongs to a split only when EVERY input and
target day lies inside the split's years, so no window straddles a boundary.

Batches are cut by index from the scaled arrays held once in memory (no ``xL`` copy). The
training order is a pure function of ``(seed, epoch)`` and the batch position, so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import keras
import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.data.store import Tensors
from soilcast.ml.forecast_weather import WeatherFeed, WeatherLookup
from soilcast.ml.scaling import Scaler, mask_fill

SplitName = Literal["train", "val", "test"]


def split_years(cfg: Config, split: SplitName) -> tuple[int, int]:
    try:
        return {
            "train": cfg.split.train_years,
            "val": cfg.split.val_years,
            "test": cfg.split.test_years,
        }[split]
    except KeyError:
        raise ValueError(f"split must be train, val or test (got {split!r})") from None


def check_daily(time: pd.DatetimeIndex, source: str = "tensor store") -> None:
    """Window arithmetic is by index, so the axis must be strictly consecutive days."""
    if len(time) < 2:
        raise ValueError(f"{source}: time axis has {len(time)} step(s); need a daily series")
    step = np.diff(time.values.astype("datetime64[D]").astype(np.int64))
    if not np.all(step == 1):
        bad = int(np.argmax(step != 1))
        raise ValueError(
            f"{source}: time axis must be consecutive days; gap/duplicate after {time[bad].date()}"
        )


def split_slice(time: pd.DatetimeIndex, years: tuple[int, int]) -> slice:
    """Index range of the days whose year lies in ``years`` (inclusive)."""
    idx = np.flatnonzero((time.year >= years[0]) & (time.year <= years[1]))
    if idx.size == 0:
        raise ValueError(f"no days of years {years[0]}-{years[1]} in the time axis")
    return slice(int(idx[0]), int(idx[-1]) + 1)


def window_ends(time: pd.DatetimeIndex, years: tuple[int, int], seq_len: int, max_lead: int) -> np.ndarray:
    """Indices ``t`` of every window whose input AND target days (up to ``t + max_lead``)
    lie inside ``years``: every lead is scored on the same windows."""
    sl = split_slice(time, years)
    return np.arange(sl.start + seq_len - 1, sl.stop - max_lead, dtype=np.int64)


def split_ends(cfg: Config, time: pd.DatetimeIndex, split: SplitName) -> np.ndarray:
    return window_ends(time, split_years(cfg, split), cfg.window.seq_len, cfg.window.max_lead)


def evenly_spaced(ends: np.ndarray, n: int) -> np.ndarray:
    """``n`` windows spread over the whole split (all seasons), in time order."""
    if n >= len(ends):
        return ends
    return ends[np.unique(np.linspace(0, len(ends) - 1, n).round().astype(np.int64))]


def gather(arr: np.ndarray, ends: np.ndarray, first: int, length: int) -> np.ndarray:
    """Stack ``arr[t+first : t+first+length]`` for each ``t`` in ``ends`` -> [N, length, ...]."""
    return np.stack([np.asarray(arr[t + first : t + first + length]) for t in ends])


def n_input_channels(cfg: Config) -> int:
    """Network input channels: weather, antecedent soil moisture (optional), the mask."""
    return len(cfg.variables) + int(cfg.window.antecedent_soil_moisture) + 1


@dataclass(frozen=True)
class Prepared:
    """Scaled arrays the pipeline cuts windows from."""

    Xs: np.ndarray  # [T, H, W, C'] float32: weather, (+ antecedent state), mask channel
    Ys: np.ndarray  # [T, H, W, 1] float32: scaled state of day s, 0 outside the mask
    targets: np.ndarray  # [T, H, W, K] float32: the targets of input day s per lead (state or increment)
    weight: np.ndarray  # [H, W] float32, 1 on mask cells
    time: pd.DatetimeIndex
    feed: WeatherFeed | None = None  # the lead days' weather (window.forecast_weather), or None


def target_of_day(scaled_state: np.ndarray, Y: np.ndarray, mask: np.ndarray, scaler: Scaler,
                  kind: str, leads: tuple[int, ...] | list[int]) -> np.ndarray:
    """[T, H, W, K] targets per input day ``s`` and lead ``k`` (days with no ``s + k`` in
    the series have none: 0). ``scaled_state`` [T, H, W, 1] is what a state target reads."""
    out = np.zeros((*scaled_state.shape[:3], len(leads)), dtype=np.float32)
    y = None if kind == "state" else np.asarray(Y[..., 0], dtype=np.float32)
    for i, lead in enumerate(leads):
        if lead >= len(out):
            continue
        if kind == "state":
            out[:-lead, ..., i] = scaled_state[lead:, ..., 0]
        else:
            change = (y[lead:] - y[:-lead]) * np.float32(1.0 / scaler.increment_scale[i])
            out[:-lead, ..., i] = np.where(mask, change, 0.0)
    return out


def prepare(t: Tensors, cfg: Config, scaler: Scaler, chunk: int = 366, weather: bool = False,
            archive: WeatherLookup | None = None) -> Prepared:
    """Scale the whole store once (chunked in time, float32 throughout). ``weather``: batches
    also carry the lead days' weather when the config trains with it (``t`` then holds the
    training years); ``archive``: a reforecast archive's by window end (else made from ``t``)."""
    T, H, W, C = t.X.shape
    extra = int(cfg.window.antecedent_soil_moisture)
    Xs = np.empty((T, H, W, C + extra + 1), dtype=np.float32)
    Ys = np.empty((T, H, W, 1), dtype=np.float32)
    for i in range(0, T, chunk):
        sl = slice(i, min(i + chunk, T))
        Xs[sl, ..., :C] = scaler.scale_inputs(np.asarray(t.X[sl], dtype=np.float32))
        Ys[sl] = mask_fill(scaler.scale_target(np.asarray(t.Y[sl], dtype=np.float32)), t.mask)
    if extra:
        Xs[..., C] = Ys[..., 0]
    Xs[..., -1] = t.mask
    targets = target_of_day(Ys, t.Y, t.mask, scaler, cfg.window.target, cfg.window.leads)
    feed = None
    if weather and cfg.window.uses_forecast_weather:
        from soilcast.forecast_error import temporal_spread

        train = split_slice(t.time, cfg.split.train_years)
        feed = WeatherFeed(cfg, np.asarray(t.X), scaler, temporal_spread(t.X[train]), archive)
    return Prepared(Xs=Xs, Ys=Ys, targets=targets, weight=t.mask.astype(np.float32), time=t.time, feed=feed)


def patch_offsets(mask: np.ndarray, patch: int) -> tuple[tuple[int, int], np.ndarray]:
    """Patch size (clipped to the grid) and every top-left offset whose patch holds mask cells."""
    H, W = mask.shape
    ph, pw = (H, W) if patch <= 0 else (min(patch, H), min(patch, W))
    offs = [
        (i, j)
        for i in range(H - ph + 1)
        for j in range(W - pw + 1)
        if mask[i : i + ph, j : j + pw].any()
    ]
    if not offs:
        raise ValueError("the mask is empty: no cell to train on")
    return (ph, pw), np.asarray(offs, dtype=np.int64)


class WindowDataset(keras.utils.PyDataset):
    """Batches ``(x [b,L,h,w,C'], y_true [b,L,h,w,K+1])``: ``y_true[..., :K]`` the targets
    per lead, ``y_true[..., K]`` the mask weight. With the lead days' weather
    (``data.feed``), ``x`` is ``(x, forecast_meteo [b,K,h,w,C], has_forecast [b,1])``.

    ``train=True``: an endless stream; batch ``i`` of this ``fit`` call is global step
    ``start_epoch * steps + i`` and is drawn from the permutation seeded by
    ``(seed, epoch)`` with random spatial patches seeded by ``(seed, epoch, step)``.
    ``train=False``: every window of ``ends`` once, in order, on the full grid.
    """

    def __init__(
        self,
        data: Prepared,
        ends: np.ndarray,
        cfg: Config,
        *,
        train: bool,
        steps: int = 0,
        start_epoch: int = 0,
        patch: int = 0,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.data, self.ends, self.train = data, np.asarray(ends), train
        self.L = cfg.window.seq_len
        self.batch, self.seed = cfg.training.batch_size, cfg.seed
        self.steps, self.start_epoch = steps, start_epoch
        mask = data.weight > 0
        self.patch, self.offsets = patch_offsets(mask, patch if train else 0)
        if len(self.ends) == 0:
            raise ValueError("no complete window in this split (years too short for seq_len+lead?)")
        if train and steps <= 0:
            raise ValueError("a training stream needs steps > 0")
        self._orders: dict[int, np.ndarray] = {}

    @property
    def num_batches(self) -> int | None:
        return None if self.train else len(self)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """Window positions of one epoch: whole permutations seeded by (seed, epoch)."""
        if epoch not in self._orders:
            need, n = self.steps * self.batch, len(self.ends)
            rng = np.random.default_rng([self.seed, epoch])
            perms = [rng.permutation(n) for _ in range(math.ceil(need / n))]
            self._orders = {k: v for k, v in self._orders.items() if k >= epoch - 1}
            self._orders[epoch] = np.concatenate(perms)[:need]
        return self._orders[epoch]

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.train:
            if i >= len(self):
                raise IndexError(i)
            ts = self.ends[i * self.batch : (i + 1) * self.batch]
            return self._cut(ts, np.zeros((len(ts), 2), dtype=np.int64), np.random.default_rng([self.seed, i, 3]))
        epoch, step = divmod(self.start_epoch * self.steps + i, self.steps)
        pos = self.epoch_order(epoch)[step * self.batch : (step + 1) * self.batch]
        rng = np.random.default_rng([self.seed, epoch, step, 1])
        offs = self.offsets[rng.integers(0, len(self.offsets), size=len(pos))]
        return self._cut(self.ends[pos], offs, rng)

    def __len__(self) -> int:
        """Batches in one pass over ``ends`` (the last one may be short)."""
        return math.ceil(len(self.ends) / self.batch)

    def _cut(self, ts: np.ndarray, offs: np.ndarray, rng: np.random.Generator) -> tuple[Any, np.ndarray]:
        (ph, pw), L, d = self.patch, self.L, self.data
        C, K = d.Xs.shape[-1], d.targets.shape[-1]
        x = np.empty((len(ts), L, ph, pw, C), dtype=np.float32)
        y = np.empty((len(ts), L, ph, pw, K + 1), dtype=np.float32)
        for k, (t, (i, j)) in enumerate(zip(ts, offs)):
            x[k] = d.Xs[t - L + 1 : t + 1, i : i + ph, j : j + pw]
            y[k, ..., :K] = d.targets[t - L + 1 : t + 1, i : i + ph, j : j + pw]
            y[k, ..., K] = d.weight[i : i + ph, j : j + pw]
        if d.feed is None:
            return x, y
        w, has = d.feed.inputs(ts, rng, self.train)
        w = np.stack([w[k, :, i : i + ph, j : j + pw] for k, (i, j) in enumerate(offs)])
        return (x, w, has), y


def window_inputs(cfg: Config, tensors: Tensors, ends: np.ndarray, antecedent: bool) -> dict[str, np.ndarray]:
    """Physical-unit serving inputs for the windows ending at ``ends`` (windows' convention)."""
    from soilcast.contract import serving_inputs

    return serving_inputs(tensors.X, tensors.Y, ends, cfg.window.seq_len, antecedent)


def load_test_block(cfg: Config, t: Tensors) -> tuple[Tensors, np.ndarray]:
    return load_split_block(cfg, t, "test")


def load_split_block(cfg: Config, t: Tensors, split: str) -> tuple[Tensors, np.ndarray]:
    """The days the windows of ``split`` touch, loaded once (a lazy store is read in one
    go), and the window ends re-indexed into that block."""
    from dataclasses import replace

    ends = split_ends(cfg, t.time, split)
    lo, hi = int(ends[0]) - cfg.window.seq_len + 1, int(ends[-1]) + cfg.window.max_lead + 1
    block = replace(t, X=np.asarray(t.X[lo:hi]), Y=np.asarray(t.Y[lo:hi]), time=t.time[lo:hi])
    return block, ends - lo
