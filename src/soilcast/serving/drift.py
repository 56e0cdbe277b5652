"""Input and prediction drift against the training reference shipped with each SavedModel.

Two statistics per variable, over a sliding window of the most recent requests:

- PSI (population stability index) ``sum((p - q) * ln(p / q))`` with ``q`` the reference
  bin shares from ``drift_reference.json`` and ``p`` the live shares in the *same* bins
  (binning shared with the exporter through :func:`soilcast.export.drift_reference.bin_index`;
  both shares floored at ``psi_epsilon`` so an empty bin keeps PSI finite).
  Rule of thumb: < 0.1 stable, 0.1-0.25 drifting, > 0.25 shifted.
- standardised mean shift ``(mean_live - mean_ref) / std_ref``.

Inputs are judged over mask cells only (NaN outside the mask is the store's convention),
predictions over their finite cells. To stay off the request path the gateway hands each
request to :class:`DriftMonitor`, a bounded queue drained by one background thread; each
request is summarised by a fixed random subset of ``drift_sample_cells`` mask cells, so the
cost per request does not grow with the grid.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soilcast.export.drift_reference import bin_index

log = logging.getLogger("soilcast.serving.drift")

PREDICTION = "soil_moisture"


@dataclass(frozen=True)
class Distribution:
    """One reference distribution: quantile bin edges, bin shares and moments."""

    edges: np.ndarray
    proportions: np.ndarray
    mean: float
    std: float

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> "Distribution":
        edges = np.asarray(d["edges"], np.float64)
        props = np.asarray(d["proportions"], np.float64)
        if edges.ndim != 1 or props.shape != (edges.size - 1,):
            raise ValueError(
                f"drift reference for {name!r}: expected len(edges) = len(proportions) + 1, "
                f"got {edges.size} edges and {props.size} proportions"
            )
        return cls(edges, props, float(d["mean"]), float(d["std"]))


@dataclass(frozen=True)
class DriftReference:
    """Reference for the input variables (channel order) and for the prediction."""

    variables: tuple[str, ...]
    inputs: tuple[Distribution, ...]
    prediction: Distribution | None

    @classmethod
    def from_json(cls, d: dict[str, Any], variables: list[str]) -> "DriftReference":
        missing = [v for v in variables if v not in d]
        if missing:
            raise ValueError(f"drift reference lacks variables {missing} (has {sorted(d)})")
        pred = d.get("prediction", {}).get(PREDICTION)
        return cls(
            tuple(variables),
            tuple(Distribution.from_json(v, d[v]) for v in variables),
            Distribution.from_json(PREDICTION, pred) if pred else None,
        )

    @property
    def names(self) -> list[tuple[str, str]]:
        """(kind, variable) for every monitored series, inputs first."""
        out = [("input", v) for v in self.variables]
        return out + ([("prediction", PREDICTION)] if self.prediction else [])

    @property
    def distributions(self) -> list[Distribution]:
        return list(self.inputs) + ([self.prediction] if self.prediction else [])


def psi(live_counts: np.ndarray, reference: np.ndarray, epsilon: float) -> float:
    """PSI of live bin counts against reference shares, both floored at ``epsilon``."""
    total = live_counts.sum()
    if total <= 0:
        return float("nan")
    p = np.maximum(live_counts / total, epsilon)
    q = np.maximum(reference, epsilon)
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass
class _Summary:
    """Sufficient statistics of one request: bin counts, sums and counts per series."""

    counts: np.ndarray  # [series, bins]
    sums: np.ndarray  # [series]
    n: np.ndarray  # [series]


def summarise(
    ref: DriftReference, x: np.ndarray, y: np.ndarray | None, cells: np.ndarray
) -> _Summary:
    """Summarise one request: ``x`` [B, L, H, W, C], ``y`` [B, H, W], flat ``cells`` to use."""
    dists = ref.distributions
    n_bins = max(d.proportions.size for d in dists)
    counts = np.zeros((len(dists), n_bins))
    sums, n = np.zeros(len(dists)), np.zeros(len(dists))
    b, l, h, w, c = x.shape
    xs = x.reshape(b, l, h * w, c)[:, :, cells, :]
    series = [xs[..., i] for i in range(c)]
    if ref.prediction is not None and y is not None:
        series.append(np.asarray(y).reshape(b, h * w)[:, cells])
    for i, (dist, values) in enumerate(zip(dists, series)):
        v = values[np.isfinite(values)].astype(np.float64)
        counts[i, : dist.proportions.size] = np.bincount(
            bin_index(v, dist.edges), minlength=dist.proportions.size
        )
        sums[i], n[i] = v.sum(), v.size
    return _Summary(counts, sums, n)


@dataclass
class DriftWindow:
    """Running totals over the last ``size`` request summaries."""

    ref: DriftReference
    size: int
    epsilon: float
    _items: deque = field(default_factory=deque)
    _counts: np.ndarray | None = None
    _sums: np.ndarray | None = None
    _n: np.ndarray | None = None

    def add(self, s: _Summary) -> None:
        if self._counts is None:
            self._counts, self._sums, self._n = (np.zeros_like(s.counts), np.zeros_like(s.sums), np.zeros_like(s.n))
        self._items.append(s)
        self._counts += s.counts
        self._sums += s.sums
        self._n += s.n
        while len(self._items) > self.size:
            old = self._items.popleft()
            self._counts -= old.counts
            self._sums -= old.sums
            self._n -= old.n

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict[tuple[str, str], dict[str, float]]:
        """{(kind, variable): {"psi", "mean_shift"}} over the current window."""
        out: dict[tuple[str, str], dict[str, float]] = {}
        if self._counts is None:
            return out
        for i, (key, dist) in enumerate(zip(self.ref.names, self.ref.distributions)):
            counts = self._counts[i, : dist.proportions.size]
            mean = self._sums[i] / self._n[i] if self._n[i] > 0 else float("nan")
            shift = (mean - dist.mean) / dist.std if dist.std > 0 else float("nan")
            out[key] = {"psi": psi(counts, dist.proportions, self.epsilon), "mean_shift": float(shift)}
        return out


Publisher = Callable[[int, dict[tuple[str, str], dict[str, float]], int], None]


class DriftMonitor:
    """Background drift computation: ``submit`` is O(1) and never blocks the request.

    Windows are kept per model version (each has its own reference); the publisher is called
    with the newest version's statistics, i.e. the drift of what "stable" serves.
    """

    def __init__(self, window: int, sample_cells: int, epsilon: float, seed: int,
                 publish: Publisher, on_drop: Callable[[], None] | None = None) -> None:
        self.window, self.sample_cells, self.epsilon, self.seed = window, sample_cells, epsilon, seed
        self._publish, self._on_drop = publish, on_drop
        self._queue: queue.Queue = queue.Queue(maxsize=window)
        self._windows: dict[int, DriftWindow] = {}
        self._cells: dict[tuple[int, bytes], np.ndarray] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soilcast-drift", daemon=True)
        self._thread.start()

    def submit(self, version: int, ref: DriftReference, mask: np.ndarray,
               x: np.ndarray, y: np.ndarray | None) -> bool:
        """Queue one request for drift; drop (and count) it when the worker lags behind."""
        try:
            self._queue.put_nowait((version, ref, mask, x, y))
            return True
        except queue.Full:
            if self._on_drop:
                self._on_drop()
            return False

    def flush(self, timeout: float) -> bool:
        """Wait until every queued request is summarised (tests, benchmarks, shutdown)."""
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join()

    def stats(self, version: int) -> dict[tuple[str, str], dict[str, float]]:
        win = self._windows.get(version)
        return win.stats() if win else {}

    def _sample(self, version: int, mask: np.ndarray) -> np.ndarray:
        key = (version, np.packbits(mask).tobytes())
        if key not in self._cells:
            cells = np.flatnonzero(mask.ravel())
            if cells.size > self.sample_cells:
                rng = np.random.default_rng(self.seed)
                cells = np.sort(rng.choice(cells, self.sample_cells, replace=False))
            self._cells[key] = cells
        return self._cells[key]

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self._queue.get()
            try:
                if item is not None:
                    self._process(*item)
            except Exception:  # a bad summary must never kill monitoring
                log.exception("drift: could not summarise a request")
            finally:
                self._queue.task_done()

    def _process(self, version: int, ref: DriftReference, mask: np.ndarray,
                 x: np.ndarray, y: np.ndarray | None) -> None:
        win = self._windows.get(version)
        if win is None or win.ref is not ref:
            win = self._windows[version] = DriftWindow(ref, self.window, self.epsilon)
        win.add(summarise(ref, x, y, self._sample(version, mask)))
        newest = max(self._windows)
        if version == newest:
            self._publish(version, win.stats(), len(win))
