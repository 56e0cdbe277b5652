"""Input and prediction drift against the training reference shipped with each SavedModel.

Statistics per variable (the registry :data:`STATISTICS`; each is exported as the gauge
``soilcast_drift_<name>``), over a sliding window of the most recent requests:

- PSI (population stability index) ``sum((p - q) * ln(p / q))`` with ``q`` the reference
  bin shares from ``drift_reference.json`` and ``p`` the live shares in the *same* bins
  (binning shared with the exporter through :func:`soilcast.export.drift_reference.bin_index`;
  both shares floored at ``psi_epsilon`` so an empty bin keeps PSI finite).
  Rule of thumb: < 0.1 stable, 0.1-0.25 drifting, > 0.25 shifted.
- standardised mean shift ``(mean_live - mean_ref) / std_ref``.

Seasonal reference: a reference distribution carries, besides its all-year shares, one set
of shares per calendar month (training days of that month, on the same edges). Each forecast
window is tagged with the month of its last input day (from the request's
``valid_day_of_year`` minus the model's ``lead_days``; 0 when the request carries no date),
and the window's PSI is taken against the mix of the monthly references of the windows it
holds (the all-year one for undated windows), so a stream of monsoon requests is compared
with the monsoon months, not with the whole year. The metric label ``reference`` says which:
``monthly`` (every window dated), ``all_year`` (none dated, or the version has no monthly
reference) or ``mixed``. The prediction's reference is the observed target of the same
training days, so prediction drift is the served forecast against what soil moisture does in
that month.

Inputs are judged over mask cells only (NaN outside the mask is the store's convention),
predictions over their finite cells; the window counts forecast windows (batch elements),
each represented by its newest day. To stay off the request path the gateway hands each
request to :class:`DriftMonitor`, a bounded queue drained every ``drift_interval_seconds``
by one background thread in a single vectorised batch; each window is summarised by a fixed
random subset of ``drift_sample_cells`` mask cells, so the cost does not grow with the grid.

Minimum sample: a window of one request says nothing about a distribution (one request of
made-up weather read PSI 1.39), so a version's drift is published only once its window holds
``serving.drift_min_windows`` windows; below that its series are absent (no value, no alert).

Traffic marking: only live traffic is drift. A client replaying the past (``soilcast
hindcast``) or re-forecasting to verify says so in the gRPC metadata :data:`TRAFFIC_METADATA`
(REST header :data:`TRAFFIC_HEADER`) with one of :data:`TRAFFIC` (absent = :data:`LIVE`);
such requests are served and counted as usual but never enter the drift window, so a
hindcast of a past season cannot switch the reference or leave its PSI behind for weeks.
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

from soilcast.serving.background import drained, offer

log = logging.getLogger("soilcast.serving.drift")

PREDICTION = "soil_moisture"
# Who is asking: only LIVE traffic enters the drift window (see the module docstring).
LIVE, HINDCAST, VERIFICATION = "live", "hindcast", "verification"
TRAFFIC = (LIVE, HINDCAST, VERIFICATION)
TRAFFIC_METADATA = "soilcast-traffic"  # gRPC metadata key (lower case, as gRPC requires)
TRAFFIC_HEADER = "X-Soilcast-Traffic"  # the REST header
N_MONTHS = 12
UNDATED = 0  # month tag of a window whose request carried no date
# month (1-12) of each 0-based day of the 366-day leap calendar (a leap year's days)
MONTH_OF_DAY = np.array([(np.datetime64("2000-01-01") + np.timedelta64(d, "D")).astype(object).month
                         for d in range(366)], np.int64)


def traffic_kind(value: str | None) -> str:
    """The traffic a request declared (:data:`LIVE` when it declared none); an unknown value
    is refused rather than guessed, since guessing "live" would let a replay pollute drift."""
    if value is None or value == "":
        return LIVE
    if value not in TRAFFIC:
        raise ValueError(f"traffic {value!r} ({TRAFFIC_METADATA} metadata / {TRAFFIC_HEADER} header) "
                         f"is not one of {list(TRAFFIC)}")
    return value


def drift_months(valid_day_of_year: np.ndarray | None, lead_days: int, batch: int) -> np.ndarray:
    """Month (1-12) of each window's last input day (valid day - lead on the leap
    calendar), or :data:`UNDATED` for every window when the request carried no date.
    ``valid_day_of_year`` [batch, K] (one per lead): the first lead's column, ``lead_days``
    the first lead."""
    if valid_day_of_year is None:
        return np.full(batch, UNDATED, np.int64)
    doy = np.asarray(valid_day_of_year, np.int64)
    doy = doy[:, 0] if doy.ndim == 2 else doy.reshape(-1)
    return MONTH_OF_DAY[(doy - int(lead_days)) % 366]


@dataclass(frozen=True)
class Distribution:
    """One reference distribution: quantile bin edges, bin shares and moments."""

    edges: np.ndarray
    proportions: np.ndarray
    mean: float
    std: float
    # row 0 all-year, rows 1-12 the months (all-year where a month has no reference)
    by_month: np.ndarray | None = None  # [13, bins]
    month_mean: np.ndarray | None = None  # [13]
    month_std: np.ndarray | None = None  # [13]
    monthly: bool = False  # the reference shipped monthly shares

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> "Distribution":
        edges = np.asarray(d["edges"], np.float64)
        props = np.asarray(d["proportions"], np.float64)
        if edges.ndim != 1 or props.shape != (edges.size - 1,):
            raise ValueError(
                f"drift reference for {name!r}: expected len(edges) = len(proportions) + 1, "
                f"got {edges.size} edges and {props.size} proportions"
            )
        mean, std = float(d["mean"]), float(d["std"])
        by_month = np.tile(props, (N_MONTHS + 1, 1))
        m_mean, m_std = np.full(N_MONTHS + 1, mean), np.full(N_MONTHS + 1, std)
        monthly = d.get("monthly") or {}
        for key, m in monthly.items():
            month = int(key)
            p = np.asarray(m["proportions"], np.float64)
            if not 1 <= month <= N_MONTHS or p.shape != props.shape:
                raise ValueError(f"drift reference for {name!r}: monthly[{key!r}] needs a month 1-12 and "
                                 f"{props.size} proportions, got {p.size}")
            by_month[month], m_mean[month], m_std[month] = p, float(m["mean"]), float(m["std"])
        return cls(edges, props, mean, std, by_month, m_mean, m_std, bool(monthly))

    def expected(self, month_counts: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Reference shares, mean and std for a window holding ``month_counts`` [13]
        windows of each month tag: the mix of those months' references."""
        by_month = self.by_month if self.by_month is not None else np.tile(self.proportions, (N_MONTHS + 1, 1))
        mm = self.month_mean if self.month_mean is not None else np.full(N_MONTHS + 1, self.mean)
        ms = self.month_std if self.month_std is not None else np.full(N_MONTHS + 1, self.std)
        w = np.asarray(month_counts, np.float64)
        if w.sum() <= 0:
            return self.proportions, self.mean, self.std
        w = w / w.sum()
        mean = float(w @ mm)
        var = float(w @ (ms**2 + mm**2)) - mean**2
        return w @ by_month, mean, float(np.sqrt(max(var, 0.0)))


@dataclass(frozen=True)
class DriftReference:
    """Reference for the input variables (channel order) and for the prediction."""

    variables: tuple[str, ...]
    inputs: tuple[Distribution, ...]
    prediction: Distribution | None
    leads: tuple[int, ...] = (1,)  # the served forecast's lead axis: one prediction series per lead

    @classmethod
    def from_json(cls, d: dict[str, Any], variables: list[str], leads: list[int] | tuple[int, ...] = (1,)) -> "DriftReference":
        missing = [v for v in variables if v not in d]
        if missing:
            raise ValueError(f"drift reference lacks variables {missing} (has {sorted(d)})")
        pred = d.get("prediction", {}).get(PREDICTION)
        return cls(
            tuple(variables),
            tuple(Distribution.from_json(v, d[v]) for v in variables),
            Distribution.from_json(PREDICTION, pred) if pred else None,
            tuple(int(k) for k in leads),
        )

    @property
    def prediction_names(self) -> list[str]:
        """One prediction series per lead (``soil_moisture_lead_<k>``); a one-lead model keeps
        the plain name its dashboards and alerts already use."""
        if len(self.leads) == 1:
            return [PREDICTION]
        return [f"{PREDICTION}_lead_{k}" for k in self.leads]

    @property
    def names(self) -> list[tuple[str, str]]:
        """(kind, variable) for every monitored series, inputs first, then each lead's prediction
        (every lead against the same reference: the observed target distribution)."""
        out = [("input", v) for v in self.variables]
        return out + ([("prediction", n) for n in self.prediction_names] if self.prediction else [])

    @property
    def distributions(self) -> list[Distribution]:
        preds = [self.prediction] * len(self.prediction_names) if self.prediction else []
        return list(self.inputs) + preds

    @property
    def monthly(self) -> bool:
        return all(d.monthly for d in self.distributions)


def psi(live_counts: np.ndarray, reference: np.ndarray, epsilon: float) -> float:
    """PSI of live bin counts against reference shares, both floored at ``epsilon``."""
    total = live_counts.sum()
    if total <= 0:
        return float("nan")
    p = np.maximum(live_counts / total, epsilon)
    q = np.maximum(reference, epsilon)
    return float(np.sum((p - q) * np.log(p / q)))


@dataclass(frozen=True)
class SeriesWindow:
    """What a drift statistic sees of one monitored series over the current window: live bin
    counts and moments, and the reference it is judged against (already mixed by month)."""

    counts: np.ndarray  # live counts per reference bin
    mean: float  # live mean (NaN when the window holds no finite value)
    reference: np.ndarray  # reference bin shares
    ref_mean: float
    ref_std: float
    epsilon: float  # floor of both shares (serving.psi_epsilon)


@dataclass(frozen=True)
class DriftStatistic:
    """One drift statistic: ``compute(window) -> float`` (NaN = undefined, not exported),
    exported as the gauge ``soilcast_drift_<name>`` with ``help`` as its help text."""

    name: str
    help: str
    compute: Callable[[SeriesWindow], float]


def _mean_shift(w: SeriesWindow) -> float:
    return float((w.mean - w.ref_mean) / w.ref_std) if w.ref_std > 0 else float("nan")


# The one list of drift statistics: DriftWindow computes these, telemetry exports them.
STATISTICS: tuple[DriftStatistic, ...] = (
    DriftStatistic("psi", "PSI of the recent window vs the training reference",
                   lambda w: psi(w.counts, w.reference, w.epsilon)),
    DriftStatistic("mean_shift", "(window mean - reference mean) / reference std", _mean_shift),
)


@dataclass
class _Summary:
    """Sufficient statistics of one forecast window: bin counts, sums and counts per series."""

    counts: np.ndarray  # [series, bins]
    sums: np.ndarray  # [series]
    n: np.ndarray  # [series]
    months: np.ndarray = field(default_factory=lambda: np.zeros(N_MONTHS + 1))  # windows per month tag


def summarise_batch(
    ref: DriftReference, xs: list[np.ndarray], ys: list[np.ndarray | None], cells: np.ndarray,
    months: list[np.ndarray | None] | None = None,
) -> list[_Summary]:
    """One summary per forecast window in the requests ``xs`` ([B, L, H, W, C] each) and
    their predictions ``ys`` ([B, K, H, W] per lead, [B, H, W] for one lead, or None), over
    the flat ``cells``.

    Only the newest day of each window counts: consecutive daily forecasts share L-1 days, so
    counting whole windows would weigh each day L times. A value's bin is the number of
    interior edges at or below it, i.e. the exporter's ``bin_index`` convention. Everything is
    vectorised over windows and series, so a batch costs a handful of numpy calls.
    """
    dists = ref.distributions
    n_series, nb = len(dists), max(d.proportions.size for d in dists)
    newest = np.concatenate([np.asarray(x[:, -1]) for x in xs])  # [K, H, W, C]
    k, h, w, c = newest.shape
    values = np.full((n_series, k, cells.size), np.nan, np.float32)
    values[:c] = newest.reshape(k, h * w, c)[:, cells, :].transpose(2, 0, 1)
    if ref.prediction is not None:
        n_leads = len(ref.prediction_names)
        for row, (x, y) in zip(np.cumsum([0] + [len(x) for x in xs]), zip(xs, ys)):
            if y is not None:
                by_lead = np.asarray(y).reshape(len(x), n_leads, h * w)[:, :, cells]  # [B, K, cells]
                values[c : c + n_leads, row : row + len(x)] = by_lead.transpose(1, 0, 2)
    finite = np.isfinite(values)
    idx = np.zeros(values.shape, np.int32)
    interior = np.full((n_series, nb - 1), np.inf)  # series with fewer bins never reach the rest
    for i, d in enumerate(dists):
        interior[i, : d.edges.size - 2] = d.edges[1:-1]
    for j in range(nb - 1):
        idx += values >= interior[:, j, None, None]
    idx += (np.arange(n_series)[:, None] * k + np.arange(k)[None, :])[:, :, None] * nb
    counts = np.bincount(idx[finite], minlength=n_series * k * nb).reshape(n_series, k, nb)
    sums = np.where(finite, values, 0.0).sum(axis=-1, dtype=np.float64)  # [S, K]
    n = finite.sum(axis=-1)
    tags = np.concatenate([np.full(len(x), UNDATED) if m is None else np.asarray(m).reshape(-1)
                           for x, m in zip(xs, months or [None] * len(xs))]).astype(np.int64)
    onehot = np.eye(N_MONTHS + 1)[tags]
    return [_Summary(counts[:, i].astype(float), sums[:, i], n[:, i].astype(float), onehot[i]) for i in range(k)]


def summarise(ref: DriftReference, x: np.ndarray, y: np.ndarray | None, cells: np.ndarray,
              months: np.ndarray | None = None) -> _Summary:
    """The summed statistics of all windows in one request (see :func:`summarise_batch`)."""
    parts = summarise_batch(ref, [x], [y], cells, [months])
    return _Summary(sum(p.counts for p in parts), sum(p.sums for p in parts), sum(p.n for p in parts),
                    sum(p.months for p in parts))


@dataclass
class DriftWindow:
    """Running totals over the last ``size`` forecast windows."""

    ref: DriftReference
    size: int
    epsilon: float
    _items: deque = field(default_factory=deque)
    _counts: np.ndarray | None = None
    _sums: np.ndarray | None = None
    _n: np.ndarray | None = None
    _months: np.ndarray = field(default_factory=lambda: np.zeros(N_MONTHS + 1))

    def add(self, s: _Summary) -> None:
        if self._counts is None:
            self._counts, self._sums, self._n = (np.zeros_like(s.counts), np.zeros_like(s.sums), np.zeros_like(s.n))
        self._items.append(s)
        self._counts += s.counts
        self._sums += s.sums
        self._n += s.n
        self._months += s.months
        while len(self._items) > self.size:
            old = self._items.popleft()
            self._counts -= old.counts
            self._sums -= old.sums
            self._n -= old.n
            self._months -= old.months

    @property
    def reference(self) -> str:
        """Which reference the window is judged against: monthly, all_year or mixed."""
        undated, total = self._months[UNDATED], self._months.sum()
        if not self.ref.monthly or undated >= total:
            return "all_year"
        return "monthly" if undated <= 0 else "mixed"

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict[tuple[str, str], dict[str, Any]]:
        """{(kind, variable): {<each statistic's name>: value, "reference"}} over the current
        window, against the mix of the monthly references of the windows it holds."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        if self._counts is None:
            return out
        months = self._months if self.ref.monthly else np.eye(N_MONTHS + 1)[UNDATED]
        for i, (key, dist) in enumerate(zip(self.ref.names, self.ref.distributions)):
            counts = self._counts[i, : dist.proportions.size]
            props, ref_mean, ref_std = dist.expected(months)
            mean = self._sums[i] / self._n[i] if self._n[i] > 0 else float("nan")
            window = SeriesWindow(counts, mean, props, ref_mean, ref_std, self.epsilon)
            out[key] = {s.name: s.compute(window) for s in STATISTICS} | {"reference": self.reference}
        return out


Publisher = Callable[[int, dict[tuple[str, str], dict[str, Any]], int], None]


class DriftMonitor:
    """Background drift computation: ``submit`` is O(1) and never blocks the request.

    The worker wakes every ``interval`` seconds and summarises everything queued in one
    vectorised batch, so the per-request cost (and its GIL time, which is what would slow
    the request threads) shrinks with traffic. The queue holds at most ``window`` requests,
    as only the newest ``window`` windows matter; requests arriving while it is full are
    skipped and counted (``on_drop``). Windows are kept per model version (each has its own
    reference); ``publish`` gets the newest version's statistics, or ``{}`` while its window
    holds fewer than ``min_windows`` windows (too few to say anything; the publisher then
    withdraws that version's series). Only live traffic is to be submitted (the gateway
    filters on :func:`traffic_kind`).
    """

    def __init__(self, window: int, sample_cells: int, epsilon: float, seed: int,
                 publish: Publisher, on_drop: Callable[[], None] | None = None,
                 interval: float = 1.0, min_windows: int = 1) -> None:
        if interval <= 0:
            raise ValueError(f"drift interval must be positive, got {interval}")
        if not 1 <= min_windows <= window:
            raise ValueError(f"drift min_windows must be 1..window ({window}), got {min_windows}")
        self.window, self.sample_cells, self.epsilon, self.seed = window, sample_cells, epsilon, seed
        self.interval, self.min_windows = interval, min_windows
        self._publish, self._on_drop = publish, on_drop
        self._queue: queue.Queue = queue.Queue(maxsize=window)
        self._windows: dict[int, DriftWindow] = {}
        self._cells: dict[tuple[int, bytes], np.ndarray] = {}
        self._stop, self._wake = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name="soilcast-drift", daemon=True)
        self._thread.start()

    def submit(self, version: int, ref: DriftReference, mask: np.ndarray,
               x: np.ndarray, y: np.ndarray | None, months: np.ndarray | None = None) -> bool:
        """Queue one request for drift (``months``: each window's month tag, see
        :func:`drift_months`; None = undated); skip (and count) it when the queue is full."""
        return offer(self._queue, (version, ref, mask, x, y, months), self._on_drop)

    def flush(self, timeout: float) -> bool:
        """Summarise everything queued now and wait for it (tests, benchmarks, shutdown)."""
        return drained(self._queue, timeout, self._wake)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
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

    def _drain(self) -> list[tuple]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            items = self._drain()
            try:
                self._process(items)
            except Exception:  # a bad summary must never kill monitoring
                log.exception("drift: could not summarise %d requests", len(items))
            finally:
                for _ in items:
                    self._queue.task_done()

    def _process(self, items: list[tuple]) -> None:
        groups: dict[tuple[int, int], list[tuple]] = {}
        for item in items:
            groups.setdefault((item[0], id(item[1])), []).append(item)
        for group in groups.values():
            version, ref, mask = group[0][:3]
            win = self._windows.get(version)
            if win is None or win.ref is not ref:
                win = self._windows[version] = DriftWindow(ref, self.window, self.epsilon)
            for summary in summarise_batch(ref, [g[3] for g in group], [g[4] for g in group],
                                           self._sample(version, mask), [g[5] for g in group]):
                win.add(summary)
        if items:
            newest = max(self._windows)
            win = self._windows[newest]
            self._publish(newest, win.stats() if len(win) >= self.min_windows else {}, len(win))
