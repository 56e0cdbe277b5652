"""``soilcast hindcast``: every day of a period through the running gateway, batched, every lead scored.

The archive must hold, for each valid day and lead, exactly what a single-window Predict of
the window ending ``lead`` days earlier returns (so the batching and the re-indexing onto
valid days are right), and the scores must be the metrics computed here from the archive's
own arrays and from the store (persistence = Y[v - k], climatology of the training years),
at every lead, with the columns of the metric registry. A version exported before the lead
axis is hindcast at its one lead.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.config import save_config
from soilcast.data.store import open_tensors
from soilcast.evaluation import metrics
from soilcast.ml.models.references import Climatology, benchmark_names, references
from soilcast.serving.hindcast import COLUMNS, batch_size
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import client, frozen_server, gateway, metric, scrape
from soilcast.testing.standards import summary, violations
from soilcast.testing.standin import write_standin


def served_store(tmp_path, leads, serving=None):
    """A 1 MB message limit: ~10 windows per request, so a season takes many requests
    (``serving``: more serving settings)."""
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path, {"serving": {"max_message_mb": 1, **(serving or {})}})
    write_synthetic_store(cfg)
    t = open_tensors(cfg.paths.processed)
    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon, mask=t.mask,
                  variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                  leads=leads(cfg) if leads else None)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    return cfg, t, params


@pytest.fixture
def served(tmp_path):
    return served_store(tmp_path, lambda cfg: list(cfg.window.leads))


def assert_standards(nc) -> None:
    """CF-1.8 without an error, ACDD-1.3 but for the gaps :mod:`soilcast.testing.standards`
    names (the checkers' own verdict), and every data variable deflated."""
    import h5py

    failed, reports = violations(nc)
    assert not failed, f"{nc.name}: {failed} ({summary(reports)})"
    with h5py.File(nc) as f, xr.open_dataset(nc) as ds:
        for name in ds.data_vars:
            if ds[name].ndim >= 2 and not name.endswith("_bnds"):
                assert f[name].compression == "gzip", f"{nc.name}: {name} not compressed"


def hindcast(gw, params, start, end, *options):
    target = gw if isinstance(gw, str) else gw.target
    return CliRunner().invoke(app, ["hindcast", "--server", target, "--start", start, "--end", end,
                                    "--params", str(params), *options])


def test_hindcast_archive_and_scores_at_every_lead(served):
    cfg, t, params = served
    leads = list(cfg.window.leads)
    K, L = len(leads), cfg.window.seq_len
    checks = [("2013-06-01", 0), ("2013-07-04", 3), ("2013-09-30", K - 1)]  # (valid day, lead index)
    with gateway(cfg) as gw:
        run = hindcast(gw, params, "2013-06-01", "2013-09-30")
        with client(gw) as c:
            singles = {(day, k): c.predict_by_lead(t.X[i - L + 1 : i + 1][None])[0, k] for day, k in checks
                       for i in [t.time.get_loc(pd.Timestamp(day) - pd.Timedelta(days=leads[k]))]}
    assert run.exit_code == 0, run.output
    out = cfg.paths.artifacts_dir / "hindcast" / "2013-06-01_2013-09-30"
    summary = json.loads((out / "scores.json").read_text())
    n_inits = 122 + leads[-1] - leads[0]  # windows ending 2013-05-25 .. 2013-09-29, each forecast once
    batch = batch_size(L, t.mask.shape, 7, 1)
    assert 1 < batch < n_inits and summary["n_windows"] == n_inits
    assert summary["n_requests"] == math.ceil(n_inits / batch) and summary["n_days"] == 122
    assert summary["leads"] == leads and summary["init_period"] == ["2013-05-25", "2013-09-29"]

    ds = xr.open_dataset(out / "hindcast.nc")
    assert ds.attrs["Conventions"] == "CF-1.8, ACDD-1.3" and ds.sizes["time"] == 122 and ds.sizes["lead_time"] == K
    assert_standards(out / "hindcast.nc")
    assert ds.attrs["time_coverage_start"] == "2013-06-01T00:00:00Z" and ds.attrs["time_coverage_duration"] == "P122D"
    names = t.attrs["basin_names"]
    assert ds["basin_id"].attrs["flag_values"].tolist() == [0, 1, 2]
    assert ds["basin_id"].attrs["flag_meanings"] == f"outside_the_basins {names['1']} {names['2']}"
    np.testing.assert_array_equal(ds["basin_id"].values, t.basin_id)
    assert ds["soil_moisture"].attrs["coverage_content_type"] == "modelResult"
    assert ds["climatology"].attrs["coverage_content_type"] == "referenceInformation"
    assert ds["soil_moisture"].dims == ("time", "lead_time", "lat", "lon")
    assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
    assert list(ds["lead_time"].values.astype("timedelta64[D]").astype(int)) == leads
    assert str(ds["forecast_reference_time"].values[0, -1])[:10] == "2013-05-25"
    for (day, k), y in singles.items():
        np.testing.assert_array_equal(ds["soil_moisture"].sel(time=day).values[k], y, err_msg=f"{day} lead {leads[k]}")

    valid = pd.date_range("2013-06-01", "2013-09-30")
    idx = t.time.get_indexer(valid)
    obs, pred = t.Y[idx, ..., 0], ds["soil_moisture"].values
    clim = Climatology.from_config(cfg, t.Y, t.time).predict(valid)
    np.testing.assert_array_equal(ds["observed"].values, obs)
    w = metrics.area_weights(t.lat, t.mask)
    scores = summary["scores"]
    assert set(scores) == {"standin v1", *references()}
    for k, lead in enumerate(leads):
        pers = t.Y[idx - lead, ..., 0]
        s = scores["standin v1"]["overall"][str(lead)]
        assert s["rmse"] == pytest.approx(metrics.rmse(obs, pred[:, k], w), rel=1e-6)
        assert s["skill_vs_persistence"] == pytest.approx(metrics.skill_score(obs, pred[:, k], pers, w), rel=1e-6)
        assert scores["persistence"]["overall"][str(lead)]["rmse"] == pytest.approx(metrics.rmse(obs, pers, w), rel=1e-6)
        assert scores["climatology"]["overall"][str(lead)]["rmse"] == pytest.approx(metrics.rmse(obs, clim, w), rel=1e-5)
        np.testing.assert_array_equal(ds["persistence"].values[:, k], np.where(t.mask, pers, np.nan))
    west = w * (t.basin_id == 1)
    assert scores["standin v1"]["basins"]["West"]["7"]["mae"] == pytest.approx(
        metrics.mae(obs, pred[:, leads.index(7)], west), rel=1e-6)
    assert scores["persistence"]["seasons"]["premonsoon_mam"]["1"]["n"] == 0  # JJAS only

    for lead in map(str, leads):  # the skill against the best benchmark reference on this period, by hand
        mse = {n: scores[n]["overall"][lead]["mse"] for n in benchmark_names()}
        best = min(mse, key=mse.get)
        assert summary["best_reference"][lead] == best
        assert summary["skill_vs_best_reference"]["standin v1"][lead] == pytest.approx(
            1 - scores["standin v1"]["overall"][lead]["mse"] / mse[best], rel=1e-9)
        assert summary["skill_vs_best_reference"][best][lead] == 0.0

    table = (out / "scores.md").read_text()
    skill1 = summary["skill_vs_best_reference"]["standin v1"]["1"]
    assert "| model | " + " | ".join(f"lead {k}" for k in leads) + " |" in table
    assert f"| standin v1 | {skill1:.4f} |" in table
    header = next(line for line in table.splitlines() if line.startswith("| scope"))
    assert header.split(" | ")[4:] == [*COLUMNS[:-1], COLUMNS[-1] + " |"]
    assert list(COLUMNS) == [n for n, m in metrics.METRICS.items() if m.leaderboard]  # the registry's
    assert "season monsoon_jjas" in table and "season winter_jf" not in table and "basin East" in table
    s7 = scores["standin v1"]["overall"]["7"]
    assert f"| overall | standin v1 | 7 | {s7['n']} | {s7['rmse']:.4f} |" in table
    rows = [line for line in table.splitlines() if line.startswith("| overall |")]
    assert len(rows) == len(scores) * K  # one row per model x lead
    assert table.strip() in run.output
    figures = [out / name for name in ("hydrographs.png", "skill_by_lead.png", "skill_by_season.png")]
    assert summary["figures"] == [p.name for p in figures]
    for path in figures:  # drawn beside the scores, and the printout says so
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"wrote {path}" in run.output


def test_a_version_from_before_the_lead_axis_is_hindcast_at_its_one_lead(tmp_path):
    cfg, t, params = served_store(tmp_path, None)
    with gateway(cfg) as gw:
        run = hindcast(gw, params, "2013-06-01", "2013-06-30")
        early = hindcast(gw, params, "2010-01-02", "2010-02-01")
    assert run.exit_code == 0, run.output
    summary = json.loads((cfg.paths.artifacts_dir / "hindcast" / "2013-06-01_2013-06-30" / "scores.json").read_text())
    assert summary["leads"] == [1] and summary["n_windows"] == 30
    assert all(list(s["overall"]) == ["1"] for s in summary["scores"].values())
    assert early.exit_code == 1 and "valid days must lie in 2010-01-08..2013-12-31" in early.output, early.output


def test_hindcast_refuses_days_without_history_or_observation(served):
    cfg, t, params = served
    with gateway(cfg) as gw:
        late = hindcast(gw, params, "2013-12-01", "2014-01-05")
        early = hindcast(gw, params, "2010-01-02", "2010-02-01")
    for run in (late, early):  # the last lead (7 days) needs a week more history than lead 1
        assert run.exit_code == 1 and "valid days must lie in 2010-01-14..2013-12-31" in run.output, run.output


def test_requests_never_exceed_the_gateways_batch_limit():
    """A demo-sized message limit holds 122 windows; the gateway takes serving.max_batch."""
    assert batch_size(7, (31, 31), 8, 64) > 64
    assert batch_size(7, (31, 31), 8, 64, max_batch=64) == 64
    assert batch_size(7, (31, 31), 8, 1, max_batch=64) == batch_size(7, (31, 31), 8, 1)



LEVELS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]


def test_a_probabilistic_version_is_hindcast_with_crps_coverage_and_brier(tmp_path):
    """The served quantiles (forecast_products, batched through the same forecaster) are
    archived on the valid days and scored per lead and basin; every probabilistic score is
    recomputed here from the archive's arrays."""
    from soilcast.contract import calendar_bin
    from soilcast.evaluation.evaluate import CLIMATOLOGICAL_DISTRIBUTION
    from soilcast.export.products import d1_threshold, product_tables
    from soilcast.ml.models.references import probabilistic_benchmark_names
    from soilcast.quantiles import quantile_cdf
    from soilcast.testing.synthetic import write_synthetic_store

    cfg = tiny_config(tmp_path, {"serving": {"max_message_mb": 1}})
    write_synthetic_store(cfg)
    t = open_tensors(cfg.paths.processed)
    tables = product_tables(cfg, t)
    write_standin(cfg.paths.models_dir / "1", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon, mask=t.mask,
                  variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                  leads=list(cfg.window.leads), quantile_levels=LEVELS, tables=tables,
                  basin_names=t.attrs["basin_names"])
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    leads = list(cfg.window.leads)
    K, L, Q = len(leads), cfg.window.seq_len, len(LEVELS)
    checks = [("2013-06-01", 0), ("2013-07-04", 3), ("2013-07-31", K - 1)]
    with gateway(cfg) as gw:
        run = hindcast(gw, params, "2013-06-01", "2013-07-31")
        singles = {}
        with client(gw) as c:
            for day, k in checks:
                i = t.time.get_loc(pd.Timestamp(day) - pd.Timedelta(days=leads[k]))
                doy = calendar_bin(pd.DatetimeIndex([t.time[i] + pd.Timedelta(days=d) for d in leads]))
                singles[day, k] = c.predict_products(t.X[i - L + 1 : i + 1][None], doy[None].astype(np.int32),
                                                     outputs=("quantiles",))["quantiles"][0, k]
    assert run.exit_code == 0, run.output
    out = cfg.paths.artifacts_dir / "hindcast" / "2013-06-01_2013-07-31"
    summary = json.loads((out / "scores.json").read_text())
    n_inits = 61 + leads[-1] - leads[0]
    assert summary["n_windows"] == n_inits and summary["n_requests"] == math.ceil(n_inits / batch_size(L, t.mask.shape, 7, 1))
    assert summary["quantile_levels"] == LEVELS

    ds = xr.open_dataset(out / "hindcast.nc")
    assert_standards(out / "hindcast.nc")
    qv = ds["soil_moisture_quantiles"]
    assert qv.dims == ("time", "lead_time", "quantile", "lat", "lon") and ds["quantile"].values.tolist() == LEVELS
    assert ds["quantile"].attrs["long_name"] == "quantile level"
    q = qv.values
    assert q.shape == (61, K, Q, *t.mask.shape)
    assert (np.diff(q[..., t.mask], axis=2) >= 0).all() and np.isnan(q[..., ~t.mask]).all()
    np.testing.assert_array_equal(q[:, :, LEVELS.index(0.5)], ds["soil_moisture"].values)  # the median is scored
    for (day, k), want in singles.items():
        np.testing.assert_array_equal(qv.sel(time=day).values[k], want, err_msg=f"{day} lead {leads[k]}")
    valid = pd.date_range("2013-06-01", "2013-07-31")
    thr = np.where(t.mask, d1_threshold(tables, calendar_bin(valid)), np.nan)
    np.testing.assert_allclose(ds["d1_threshold"].values, thr, rtol=1e-6)

    obs = ds["observed"].values
    w_all = metrics.area_weights(t.lat, t.mask)

    def by_hand(k: int, w: np.ndarray) -> dict[str, float]:
        cells = w > 0
        o = obs[:, cells].reshape(-1)
        qq = np.moveaxis(q[:, k][:, :, cells], 1, -1).reshape(-1, Q).astype(np.float64)
        ww = np.broadcast_to(w[cells], (len(obs), int(cells.sum()))).reshape(-1)
        th = thr[:, cells].reshape(-1)
        tau = np.asarray(LEVELS)
        pinball = ((o[:, None] < qq) - tau) * (qq - o[:, None])
        inside = (o >= qq[:, LEVELS.index(0.1)]) & (o <= qq[:, LEVELS.index(0.9)])
        p = np.clip(quantile_cdf(qq, LEVELS, th, axis=1), 0, 1)
        event = (o <= th).astype(float)
        brier = np.sum(ww * (p - event) ** 2) / ww.sum()
        return {"crps": np.sum(ww * 2.0 * pinball.mean(axis=1)) / ww.sum(),
                "coverage_80": np.sum(ww * inside) / ww.sum(), "brier_d1": brier,
                "brier_clim": np.sum(ww * (0.2 - event) ** 2) / ww.sum()}

    label = "standin v1"
    scores = summary["scores"][label]
    clim_dist = CLIMATOLOGICAL_DISTRIBUTION in probabilistic_benchmark_names()
    assert summary["brier_reference"] == (f"the {CLIMATOLOGICAL_DISTRIBUTION} reference (the training years' "
                                          "distribution)" if clim_dist else "the climatological probability 0.2")
    for k in (0, K - 1):
        lead = str(leads[k])
        for got, w in ((scores["overall"][lead], w_all), (scores["basins"]["East"][lead], w_all * (t.basin_id == 2))):
            want = by_hand(k, w)
            for key in ("crps", "coverage_80", "brier_d1"):
                assert got[key] == pytest.approx(want[key], rel=1e-6), (k, key)
            ref = (summary["scores"][CLIMATOLOGICAL_DISTRIBUTION]["overall"][lead]["brier_d1"]
                   if clim_dist and w is w_all else None if clim_dist else want["brier_clim"])
            if ref is not None:
                assert got["brier_skill_d1"] == pytest.approx(1 - want["brier_d1"] / ref, rel=1e-6)
            assert 0 <= got["coverage_80"] <= 1 and got["crps"] > 0 and got["spread_error_ratio"] > 0

    table = (out / "scores.md").read_text()
    assert "## Probabilistic scores" in table and f"skill against {summary['brier_reference']}" in table
    assert "| scope | model | lead | n | crps | coverage_80 | brier_d1 | brier_skill_d1 |" in table
    s1 = scores["overall"]["1"]
    assert (f"| overall | {label} | 1 | {s1['n']} | {s1['crps']:.4f} | {s1['coverage_80']:.4f} | "
            f"{s1['brier_d1']:.4f} | {s1['brier_skill_d1']:.4f} |") in table
    section = table[table.index("## Probabilistic scores"):table.index("## Every metric")]
    rows = [line for line in section.splitlines() if line.startswith(("| overall |", "| basin "))]
    shown = [label, *(n for n in probabilistic_benchmark_names())]
    assert len(rows) == 3 * len(shown) * K  # overall and two basins, per model and lead
    assert "probabilistic: quantiles at" in run.output and table.strip() in run.output
    assert set(summary["scores"]) == {label, *references()}  # the point scores of the median, every model


def test_brier_skill_against_the_climatological_probability():
    """Without a climatological distribution the Brier score is compared with always
    forecasting the event's climatological frequency 0.2, in every block."""
    from soilcast.serving.hindcast import CLIM_PROBABILITY, ValidForecasts, climatological_brier_skill

    rng = np.random.default_rng(5)
    N, K, H, W = 60, 2, 4, 5
    valid = pd.date_range("2013-05-15", periods=N)
    obs = np.broadcast_to(rng.uniform(0.1, 0.4, (N, 1, H, W)), (N, K, H, W))
    thr = np.full((N, K, H, W), 0.2)
    basin_id = np.where(np.arange(W)[None, :] < 2, 1, 2) * np.ones((H, 1), int)
    weights = np.ones((H, W))
    weights[0, 0] = 0.0
    fc = ValidForecasts(obs, obs, valid, (1, 3), basin_id, "x")
    block = {"1": {"brier_d1": 0.05}, "3": {"brier_d1": 0.1}}

    def entry() -> dict:
        return {"overall": {k: dict(v) for k, v in block.items()},
                "seasons": {s: {k: dict(v) for k, v in block.items()} for s in ("monsoon_jjas", "rest")},
                "basins": {n: {k: dict(v) for k, v in block.items()} for n in ("West", "East")}}

    scores = {"a": entry()}
    seasons = {"monsoon_jjas": [6, 7, 8, 9], "rest": [1, 2, 3, 4, 5, 10, 11, 12]}  # any partition of the months
    climatological_brier_skill(scores, fc, weights, thr, {1: "West", 2: "East"}, seasons)

    def ref(w: np.ndarray, rows) -> float:
        event = (obs[rows, 0] <= 0.2)[:, w > 0]
        return float(np.mean((CLIM_PROBABILITY - event) ** 2))

    monsoon = np.isin(valid.month, [6, 7, 8, 9])
    assert scores["a"]["overall"]["3"]["brier_skill_d1"] == pytest.approx(1 - 0.1 / ref(weights, slice(None)))
    assert scores["a"]["seasons"]["rest"]["1"]["brier_skill_d1"] == pytest.approx(1 - 0.05 / ref(weights, ~monsoon))
    east = weights * (basin_id == 2)
    assert scores["a"]["basins"]["East"]["1"]["brier_skill_d1"] == pytest.approx(1 - 0.05 / ref(east, slice(None)))


# ------------------------------------------------------- deadlines, labels, traffic (issue 22.7, 22.8)


@pytest.mark.timeout(120)
def test_a_frozen_gateway_fails_the_hindcast_at_its_deadline(tmp_path):
    """A gateway that accepts the call and never answers used to hold a hindcast forever:
    every call now has the deadline serving.client_timeout_seconds (DEADLINE_EXCEEDED), and the
    CLI says so in one line naming the server and the setting."""
    import grpc

    from soilcast.layout import Layout
    from soilcast.serving.hindcast import run_hindcast

    cfg, _, params = served_store(tmp_path, lambda cfg: list(cfg.window.leads), {"client_timeout_seconds": 1.0})
    start, end = pd.Timestamp("2013-06-01").date(), pd.Timestamp("2013-06-05").date()
    with frozen_server() as target:
        with pytest.raises(grpc.RpcError) as err:
            run_hindcast(cfg, Layout.from_config(cfg), target, start, end)
        run = hindcast(target, params, "2013-06-01", "2013-06-05")
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert run.exit_code == 1, run.output
    lines = run.output.strip().splitlines()
    assert len(lines) == 1 and target in lines[0] and "serving.client_timeout_seconds = 1 s" in lines[0], lines
    assert "DEADLINE_EXCEEDED" in lines[0]


def test_hindcast_names_the_label_or_version_it_used_and_is_no_drift(tmp_path):
    """--label / --version pin what is hindcast and the summary names what answered; every
    request is marked hindcast traffic, so the gateway's live drift window stays empty."""
    from soilcast.repository.versions import land_as_canary

    cfg, t, params = served_store(tmp_path, lambda cfg: list(cfg.window.leads))
    write_standin(cfg.paths.models_dir / "2", seq_len=cfg.window.seq_len, lat=t.lat, lon=t.lon, mask=t.mask,
                  variables=t.variables, units=t.attrs["units"], psi_bins=cfg.serving.psi_bins,
                  leads=list(cfg.window.leads), offset=1.0)
    land_as_canary(cfg.paths.models_dir, 1, "soilcast")
    assert land_as_canary(cfg.paths.models_dir, 2, "soilcast") == {"stable": 1, "canary": 2}
    period = ("2013-06-01", "2013-06-03")
    scores = cfg.paths.artifacts_dir / "hindcast" / "2013-06-01_2013-06-03" / "scores.json"
    with gateway(cfg) as gw:
        runs = {}
        for options, served in [((), "label stable (default) -> version 1"),
                                (("--label", "canary"), "label canary -> version 2"),
                                (("--version", "1"), "version 1")]:
            runs[served] = hindcast(gw, params, *period, *options)
            assert runs[served].exit_code == 0, runs[served].output
            assert json.loads(scores.read_text())["served"] == served
        both = hindcast(gw, params, *period, "--label", "canary", "--version", "2")
        beta = hindcast(gw, params, *period, "--label", "beta")
        assert gw.drift.flush(30)
        samples = scrape(gw.metrics_port)
    for served, run in runs.items():
        assert f"model standin ({served})," in run.output, run.output
    assert both.exit_code == 1 and "--label canary and --version 2 are mutually exclusive" in both.output
    assert beta.exit_code == 1 and "--label 'beta': expected one of ['stable', 'canary']" in beta.output
    assert metric(samples, "soilcast_requests_by_traffic_total", traffic="hindcast") > 3
    assert metric(samples, "soilcast_requests_by_traffic_total", traffic="live") == 0
    assert metric(samples, "soilcast_drift_window_requests") == 0
    assert metric(samples, "soilcast_drift_psi", None) is None
