"""Drift statistics: PSI / mean shift maths, the window, the monitor, and the gateway's gauges."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from soilcast.export.drift_reference import distribution
from soilcast.serving.drift import DriftMonitor, DriftReference, DriftWindow, psi, summarise
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, gateway, meteo, metric, publish, scrape

pytestmark = pytest.mark.timeout(120)


def test_psi_is_zero_for_identical_shares_and_matches_the_formula():
    q = np.array([0.25, 0.25, 0.5])
    assert psi(q * 1000, q, 1e-4) == pytest.approx(0.0)
    live = np.array([50.0, 0.0, 50.0])  # the empty bin is floored at epsilon
    p = np.array([0.5, 1e-4, 0.5])
    assert psi(live, q, 1e-4) == pytest.approx(np.sum((p - q) * np.log(p / q)))
    assert np.isnan(psi(np.zeros(3), q, 1e-4))


def _reference(rng, n=20000):
    t2m = rng.normal(295, 8, n)
    tp = np.where(rng.random(n) < 0.5, rng.gamma(0.8, 6, n), 0.0)
    return DriftReference.from_json({"t2m": distribution(t2m, 10, "K"), "tp": distribution(tp, 10, "mm/day")},
                                    ["t2m", "tp"])


def test_window_keeps_only_the_last_requests_and_reports_mean_shift():
    rng = np.random.default_rng(0)
    ref = _reference(rng)
    win = DriftWindow(ref, size=3, epsilon=1e-4)
    cells = np.arange(16)
    for shift in (50.0, 0.0, 0.0, 0.0):  # the first (very shifted) request falls out
        x = np.stack([rng.normal(295 + shift, 8, (1, 4, 4, 4)),
                      np.where(rng.random((1, 4, 4, 4)) < 0.5, rng.gamma(0.8, 6, (1, 4, 4, 4)), 0.0)], -1)
        win.add(summarise(ref, x, None, cells))
    stats = win.stats()
    assert len(win) == 3 and set(stats) == {("input", "t2m"), ("input", "tp")}
    assert abs(stats[("input", "t2m")]["mean_shift"]) < 0.5
    assert stats[("input", "t2m")]["psi"] < 0.25


def test_vectorised_binning_matches_the_exporter_convention():
    from soilcast.export.drift_reference import bin_proportions

    rng = np.random.default_rng(5)
    ref = _reference(rng)
    x = np.stack([rng.normal(300, 12, (3, 2, 10, 10)),
                  np.where(rng.random((3, 2, 10, 10)) < 0.5, rng.gamma(0.8, 6, (3, 2, 10, 10)), 0.0)], -1)
    x[0, -1, 0, 0, 0] = np.nan
    s = summarise(ref, x, None, np.arange(100))
    for i, d in enumerate(ref.inputs):
        newest = x[:, -1, ..., i]
        np.testing.assert_allclose(s.counts[i] / s.n[i], bin_proportions(newest, d.edges))
        assert s.n[i] == np.isfinite(newest).sum()


def test_reference_shape_errors_name_the_variable():
    with pytest.raises(ValueError, match="'t2m'.*3 edges and 3 proportions"):
        DriftReference.from_json({"t2m": {"edges": [0, 1, 2], "proportions": [0.3, 0.3, 0.4],
                                          "mean": 0, "std": 1}}, ["t2m"])
    with pytest.raises(ValueError, match=r"lacks variables \['sp'\]"):
        DriftReference.from_json({}, ["sp"])


def test_monitor_never_blocks_the_request_path():
    """A stuck publisher fills the bounded queue; submits then drop (counted) instead of wait."""
    rng = np.random.default_rng(1)
    ref, gate, dropped = _reference(rng), threading.Event(), []
    monitor = DriftMonitor(window=2, sample_cells=8, epsilon=1e-4, seed=0,
                           publish=lambda *a: gate.wait(), on_drop=lambda: dropped.append(1), interval=0.01)
    x = rng.normal(295, 8, (1, 2, 4, 4, 2))
    mask = np.ones((4, 4), bool)
    results = [monitor.submit(1, ref, mask, x, None) for _ in range(6)]
    assert results[:2] == [True, True] and not all(results) and len(dropped) == results.count(False)
    gate.set()
    assert monitor.flush(10)
    monitor.stop()


def test_sampling_caps_cells_per_request():
    ref = _reference(np.random.default_rng(2))
    monitor = DriftMonitor(window=4, sample_cells=5, epsilon=1e-4, seed=0, publish=lambda *a: None,
                           interval=0.01)
    mask = np.ones((6, 6), bool)
    monitor.submit(1, ref, mask, np.full((1, 3, 6, 6, 2), 295.0), None)
    assert monitor.flush(10)
    assert monitor._windows[1]._n[0] == 5  # the newest day of the window x 5 sampled cells
    monitor.stop()


def test_gateway_psi_stays_low_in_distribution_and_flags_shifted_inputs(tmp_path):
    cfg = tiny_config(tmp_path, {"serving": {"drift_window": 32}})
    publish(cfg, 1)
    rng = np.random.default_rng(3)
    with gateway(cfg) as gw, client(gw) as c:

        def run(n, **shift):
            for _ in range(n):
                c.predict(meteo(cfg, rng, **shift))
            assert gw.drift.flush(30)
            s = scrape(gw.metrics_port)
            return ({v: metric(s, "soilcast_drift_psi", kind="input", variable=v) for v in cfg.variable_names},
                    {v: metric(s, "soilcast_drift_mean_shift", kind="input", variable=v) for v in cfg.variable_names},
                    {k: metric(s, "soilcast_drift_psi", None, kind="prediction", variable=f"soil_moisture_lead_{k}")
                     for k in cfg.window.leads},  # one prediction series per lead
                    {k: metric(s, "soilcast_drift_mean_shift", None, kind="prediction",
                               variable=f"soil_moisture_lead_{k}") for k in cfg.window.leads})

        calm, calm_shift, calm_pred, _ = run(32)
        assert max(calm.values()) < 0.1, calm
        assert None not in calm_pred.values() and len(calm_pred) == cfg.window.n_leads > 1, calm_pred
        first = cfg.window.leads[0]
        assert max(abs(v) for v in calm_shift.values()) < 0.1 and calm_pred[first] < 0.1, calm_pred
        # the stand-in's drift reference is its first lead's forecast and each later lead is
        # deliberately wetter (standin.LEAD_SHIFT): each lead is its own series, in lead order
        assert all(a < b for a, b in zip(list(calm_pred.values()), list(calm_pred.values())[1:])), calm_pred
        shifted, shift, pred, pred_shift = run(32, t2m_shift=5.0, rain_factor=2.0)  # the window now holds only these
        # +5 K is a 0.6-sigma shift of t2m: critical. Doubling rain amounts leaves the dry half
        # of the days at 0, so tp's PSI is diluted to the warning band; its mean shift is large.
        assert shifted["t2m"] > 0.25 and shifted["tp"] > 0.1, shifted
        assert max(shifted.values()) > 0.25
        assert shift["t2m"] == pytest.approx(5.0 / 8.0, abs=0.1) and shift["tp"] > 0.5
        assert max(shifted[v] for v in ("d2m", "u10", "v10", "ssrd", "sp")) < 0.1
        assert pred[first] > calm_pred[first], (pred, calm_pred)  # the series the one-lead model had
        # later leads: the stand-in serves them wetter than its (first-lead) reference, so their
        # PSI need not rise; each is still published as its own finite series
        assert all(np.isfinite(v) for v in (*pred.values(), *pred_shift.values())), (pred, pred_shift)
        assert metric(scrape(gw.metrics_port), "soilcast_drift_window_requests") == 32


# ------------------------------------------------------------ seasonal reference (issue 14.7)


def _seasonal_store(cfg, rng, years=(2010, 2011)):
    """A tensors-like store whose t2m, rain and soil moisture follow a monsoon cycle: hot,
    wet and moist in June-September, cooler and dry otherwise."""
    from types import SimpleNamespace

    import pandas as pd

    time = pd.date_range(f"{years[0]}-01-01", f"{years[1]}-12-31", freq="D")
    monsoon = np.isin(time.month, [6, 7, 8, 9])[:, None, None]
    h = w = 6
    X = np.zeros((len(time), h, w, len(cfg.variable_names)), np.float32)
    for c, name in enumerate(cfg.variable_names):
        X[..., c] = rng.normal(0.0, 1.0, (len(time), h, w))
    c_t, c_p = cfg.variable_names.index("t2m"), cfg.variable_names.index("tp")
    X[..., c_t] = np.where(monsoon, rng.normal(302, 3, (len(time), h, w)), rng.normal(290, 5, (len(time), h, w)))
    X[..., c_p] = np.where(monsoon, rng.gamma(2.0, 8.0, (len(time), h, w)), rng.gamma(0.3, 2.0, (len(time), h, w)))
    Y = np.where(monsoon, rng.normal(0.35, 0.03, (len(time), h, w)), rng.normal(0.15, 0.03, (len(time), h, w)))
    return SimpleNamespace(time=time, mask=np.ones((h, w), bool), X=X, Y=Y[..., None].astype(np.float32),
                           variables=cfg.variable_names, attrs={"units": {}}), monsoon[:, 0, 0]


def test_monsoon_traffic_is_no_drift_against_the_monsoon_reference(tmp_path):
    """July traffic from the training climate: PSI < 0.1 against the July reference, drift
    against the all-season reference (the old behaviour, still used for undated requests)."""
    import json

    from soilcast.export.drift_reference import drift_reference
    from soilcast.serving.drift import drift_months

    rng = np.random.default_rng(5)
    cfg = tiny_config(tmp_path, {"split": {"train_years": [2010, 2011], "val_years": [2012, 2012],
                                           "test_years": [2013, 2013]}})
    store, monsoon = _seasonal_store(cfg, rng)
    raw = json.loads(json.dumps(drift_reference(cfg, store)))  # as shipped
    assert sorted(raw["t2m"]["monthly"], key=int) == [str(m) for m in range(1, 13)]
    ref = DriftReference.from_json(raw, cfg.variable_names)
    live, _ = _seasonal_store(cfg, np.random.default_rng(6), years=(2019, 2019))
    july = np.flatnonzero(live.time.month == 7)
    cells = np.arange(36)
    x = np.stack([live.X[d - cfg.window.seq_len + 1 : d + 1] for d in july])  # windows ending in July
    lead = cfg.window.leads[0]  # a one-lead reference: the plain prediction series
    valid = (live.time[july] + np.timedelta64(lead, "D"))
    from soilcast.ml.models.references import calendar_bin

    months = drift_months(calendar_bin(valid), lead, len(july))
    assert (months == 7).all() and (drift_months(None, 1, 3) == 0).all()
    # valid days of every lead [batch, K]: the month is still the last input day's
    by_lead = calendar_bin(live.time[july].values[:, None] + np.asarray(cfg.window.leads, "timedelta64[D]")[None])
    assert by_lead.shape == (len(july), cfg.window.n_leads)
    np.testing.assert_array_equal(drift_months(by_lead, lead, len(july)), months)
    dated, undated = (DriftWindow(ref, size=64, epsilon=1e-4) for _ in range(2))
    dated.add(summarise(ref, x, live.Y[july + lead, ..., 0], cells, months))
    undated.add(summarise(ref, x, live.Y[july + lead, ..., 0], cells, None))
    d, u = dated.stats(), undated.stats()
    for v in ("t2m", "tp"):
        assert d[("input", v)]["psi"] < 0.1 and u[("input", v)]["psi"] > 0.25, (v, d, u)
    assert d[("prediction", "soil_moisture")]["psi"] < 0.1 < u[("prediction", "soil_moisture")]["psi"]
    assert d[("input", "t2m")]["reference"] == "monthly" and u[("input", "t2m")]["reference"] == "all_year"
    assert abs(d[("input", "t2m")]["mean_shift"]) < 0.2


def test_a_shifted_prediction_distribution_raises_prediction_psi(tmp_path):
    """Same July weather, but the model serves soil moisture 0.08 m3/m3 too dry: the
    prediction PSI against the July target distribution jumps past the critical band."""
    from soilcast.export.drift_reference import drift_reference

    rng = np.random.default_rng(7)
    cfg = tiny_config(tmp_path, {"split": {"train_years": [2010, 2011], "val_years": [2012, 2012],
                                           "test_years": [2013, 2013]}})
    store, _ = _seasonal_store(cfg, rng)
    ref = DriftReference.from_json(drift_reference(cfg, store), cfg.variable_names)
    live, _ = _seasonal_store(cfg, np.random.default_rng(8), years=(2019, 2019))
    july = np.flatnonzero(live.time.month == 7)
    x = live.X[july][:, None]  # one-day windows: only the newest day counts anyway
    months = np.full(len(july), 7)
    good, dry = (DriftWindow(ref, size=64, epsilon=1e-4) for _ in range(2))
    good.add(summarise(ref, x, live.Y[july, ..., 0], np.arange(36), months))
    dry.add(summarise(ref, x, live.Y[july, ..., 0] - 0.08, np.arange(36), months))
    key = ("prediction", "soil_moisture")
    assert good.stats()[key]["psi"] < 0.1 and dry.stats()[key]["psi"] > 0.25
    assert dry.stats()[("input", "t2m")]["psi"] < 0.1  # the inputs did not move
    assert dry.stats()[key]["mean_shift"] < -1.0


def test_switching_reference_leaves_no_stale_series():
    """When a version's traffic moves from undated to dated, its all_year series goes away, so
    an old all-season PSI cannot keep an alert firing."""
    from soilcast.serving.telemetry import Telemetry

    t = Telemetry()
    key = ("input", "t2m")
    t.publish_drift(1, {key: {"psi": 0.4, "mean_shift": 1.0, "reference": "all_year"}}, 5)
    t.publish_drift(1, {key: {"psi": 0.02, "mean_shift": 0.0, "reference": "monthly"}}, 5)
    samples = {(s.name, s.labels.get("reference")): s.value
               for fam in t.registry.collect() for s in fam.samples if s.name == "soilcast_drift_psi"}
    assert samples == {("soilcast_drift_psi", "monthly"): 0.02}


def test_every_drift_statistic_is_computed_and_exported_under_its_name():
    """The registry is the one list: DriftWindow computes each statistic, telemetry exports
    each as ``soilcast_drift_<name>`` (the names the alert rules use stay as they were)."""
    from soilcast.serving.drift import STATISTICS
    from soilcast.serving.telemetry import Telemetry

    names = [s.name for s in STATISTICS]
    assert len(set(names)) == len(names) and {"psi", "mean_shift"} <= set(names)
    rng = np.random.default_rng(9)
    ref = _reference(rng)
    win = DriftWindow(ref, size=8, epsilon=1e-4)
    x = np.stack([rng.normal(295 + 20.0, 8, (4, 4, 4, 4)),  # t2m shifted by 2.5 reference sd
                  np.where(rng.random((4, 4, 4, 4)) < 0.5, rng.gamma(0.8, 6, (4, 4, 4, 4)), 0.0)], -1)
    win.add(summarise(ref, x, None, np.arange(16)))
    stats = win.stats()
    assert all(set(s) == set(names) | {"reference"} for s in stats.values())
    t = Telemetry()
    t.publish_drift(1, stats, len(win))
    exported = {s.name for fam in t.registry.collect() for s in fam.samples}
    assert {f"soilcast_drift_{n}" for n in names} <= exported
    psi_sample = next(s for fam in t.registry.collect() for s in fam.samples
                      if s.name == "soilcast_drift_psi" and s.labels["variable"] == "t2m")
    assert psi_sample.value == pytest.approx(stats[("input", "t2m")]["psi"]) and psi_sample.value > 0.25


# ------------------------------------------------ a drift an operator can trust (issue 22.8)


def _series(samples: dict, name: str) -> list[dict[str, str]]:
    """The label sets of every sample named ``name`` (empty: the series is absent)."""
    return [dict(labels) for (sample, labels), _ in samples.items() if sample == name]


def test_no_drift_is_published_before_min_windows_of_live_traffic(tmp_path):
    """A new user's single request read PSI 1.39 (above the critical 0.25): until a version's
    window holds serving.drift_min_windows live windows its drift series are absent, so
    nothing can alert; at that count they appear, with their publication time."""
    import time

    cfg = tiny_config(tmp_path)
    n = cfg.serving.drift_min_windows
    assert n > 1
    publish(cfg, 1)
    rng = np.random.default_rng(40)
    with gateway(cfg) as gw, client(gw) as c:
        c.predict(meteo(cfg, rng))
        assert gw.drift.flush(30)
        one = scrape(gw.metrics_port)
        before = time.time()
        c.predict(meteo(cfg, rng, batch=n - 1))
        assert gw.drift.flush(30)
        after = time.time()
        full = scrape(gw.metrics_port)
    assert metric(one, "soilcast_drift_window_requests") == 1  # the window fills, visibly
    for name in ("soilcast_drift_psi", "soilcast_drift_mean_shift", "soilcast_drift_updated_timestamp_seconds"):
        assert not _series(one, name), (name, _series(one, name))
    assert metric(full, "soilcast_drift_window_requests") == n
    assert {s["variable"] for s in _series(full, "soilcast_drift_psi") if s["kind"] == "input"} == set(
        cfg.variable_names)
    assert before <= metric(full, "soilcast_drift_updated_timestamp_seconds", None, version="1") <= after


def test_hindcast_and_verification_traffic_is_served_but_never_enters_drift(tmp_path):
    """A hindcast of 2018 switched the reference to all_year and left PSI 2.2 for two months:
    traffic marked hindcast (gRPC metadata) or verification (REST header) is answered as
    usual, counted by traffic, and kept out of the live drift window."""
    import json
    import urllib.request

    from soilcast.serving.drift import TRAFFIC_HEADER

    cfg = tiny_config(tmp_path)
    n = cfg.serving.drift_min_windows
    publish(cfg, 1)
    x = meteo(cfg, np.random.default_rng(41), batch=n)
    with gateway(cfg) as gw:
        with client(gw, traffic="hindcast") as c:
            replayed = [c.predict(x) for _ in range(3)]
        req = urllib.request.Request(f"http://127.0.0.1:{gw.rest_port}/v1/models/soilcast:predict",
                                     json.dumps({"inputs": x.tolist()}).encode(),
                                     {"Content-Type": "application/json", TRAFFIC_HEADER: "verification"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            verified = np.asarray(json.loads(resp.read())["outputs"]["soil_moisture"], np.float32)
        assert gw.drift.flush(30)
        samples, window = scrape(gw.metrics_port), gw.drift.stats(1)
        with client(gw) as c:
            live = c.predict(x)  # the same answer as for live traffic
    for y in (*replayed, verified):
        np.testing.assert_allclose(y, live, rtol=1e-6)
    assert not _series(samples, "soilcast_drift_psi") and window == {}
    assert metric(samples, "soilcast_drift_window_requests") == 0
    by_traffic = {t: metric(samples, "soilcast_requests_by_traffic_total", None, traffic=t)
                  for t in ("live", "hindcast", "verification")}
    assert by_traffic == {"live": 0, "hindcast": 3, "verification": 1}
    # the alert rules' counter keeps its label set
    assert {frozenset(s) for s in _series(samples, "soilcast_requests_total")} == {
        frozenset({"protocol", "method", "code", "version_label", "version"})}


def test_monitor_publishes_nothing_below_min_windows():
    """The monitor hands the publisher {} (withdraw) until the newest version's window holds
    min_windows windows, then the statistics."""
    rng = np.random.default_rng(43)
    ref, published = _reference(rng), []
    monitor = DriftMonitor(window=8, sample_cells=8, epsilon=1e-4, seed=0, interval=0.01, min_windows=3,
                           publish=lambda version, stats, n: published.append((version, bool(stats), n)))
    mask = np.ones((4, 4), bool)
    for batch in (1, 1, 1):
        monitor.submit(1, ref, mask, rng.normal(295, 8, (batch, 2, 4, 4, 2)), None)
        assert monitor.flush(10)
    monitor.stop()
    assert published == [(1, False, 1), (1, False, 2), (1, True, 3)]
    with pytest.raises(ValueError, match=r"min_windows must be 1..window \(8\), got 9"):
        DriftMonitor(window=8, sample_cells=8, epsilon=1e-4, seed=0, publish=lambda *a: None, min_windows=9)
