"""The Grafana dashboard: generated from one source, provisioned, and every query answers.

The test that matters runs each PromQL query of the dashboard against a real Prometheus
scraping a real gateway (with a realised-skill status written by hand), as Grafana would send
it, and wants each one to parse and return data.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time

import numpy as np
import pytest
import yaml

from soilcast.layout import Layout
from soilcast.serving import dashboard
from soilcast.serving.realised import empty_status, write_status
from soilcast.testing.config import tiny_config
from soilcast.testing.prometheus import prometheus
from soilcast.testing.serving import client, gateway, meteo, publish, scrape
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(240)
SERVING = REPO / "serving"
GRAFANA = SERVING / "grafana"
ALERTS = SERVING / "prometheus" / "alerts.yml"
# What Grafana puts in for the template variables: one label chosen, and $__rate_interval for
# the data source's 15 s scrape interval (4 x 15 s). The test Prometheus scrapes every second.
VARIABLES = {"label": "stable", "__rate_interval": "1m"}


def _substitute(expr: str) -> str:
    out = re.sub(r"\$\{?(\w+)\}?", lambda m: VARIABLES[m.group(1)], expr)
    assert "$" not in out, out
    return out


def test_committed_dashboard_is_the_generated_one(tmp_path):
    committed = (GRAFANA / "dashboards" / "soilcast.json").read_text()
    assert committed == dashboard.render(), (
        "serving/grafana/dashboards/soilcast.json is stale: regenerate it with "
        "`python -m soilcast.serving.dashboard serving/grafana/dashboards/soilcast.json`")
    assert dashboard.main([str(tmp_path / "out.json")]) == 0
    assert (tmp_path / "out.json").read_text() == committed


def test_dashboard_shows_what_an_operator_needs():
    board = dashboard.build()
    titles = {p["title"] for p in board["panels"]}
    assert {"Realised skill vs persistence by lead", "Realised skill vs climatology by lead",
            "Realised RMSE by lead", "Forecasts awaiting verification", "Age of the latest forecast",
            "Age of the latest observed day", "Input drift PSI by variable and version", "Drift last updated",
            "Request rate by protocol, method and code", "Request rate by traffic",
            "Latency p50 / p95 by protocol and method", "Requests in flight", "Gateway resident memory",
            "Model versions loaded", "Model loaded", "Newest serving version"} <= titles
    exprs = " ".join(e for _, e in dashboard.queries(board))
    for metric in ("soilcast_realised_rmse", "soilcast_realised_skill", "soilcast_forecasts_awaiting_verification",
                   "soilcast_latest_forecast_issued_timestamp_seconds", "soilcast_latest_observed_day_timestamp_seconds",
                   "soilcast_drift_psi", "soilcast_drift_updated_timestamp_seconds", "soilcast_requests_total",
                   "soilcast_requests_by_traffic_total", "soilcast_request_latency_seconds_bucket",
                   "soilcast_model_info", "soilcast_model_loaded", "soilcast_requests_in_flight",
                   "process_resident_memory_bytes"):
        assert metric in exprs, metric
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["label"]["query"].startswith("label_values(")
    # rows stay expanded, so their panels follow them (Grafana hides panels nested in an open row)
    assert all(not p.get("panels") for p in board["panels"] if p["type"] == "row")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    # no panel overlaps another on Grafana's 24-column grid
    cells = [(p["gridPos"]["x"] + i, p["gridPos"]["y"] + j) for p in board["panels"]
             for i in range(p["gridPos"]["w"]) for j in range(p["gridPos"]["h"])]
    assert len(cells) == len(set(cells)) and all(x < 24 for x, _ in cells)


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard():
    sources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    source = next(s for s in sources if s["type"] == "prometheus")
    assert source["url"] == "http://prometheus:9090" and source["uid"] == dashboard.DATASOURCE_UID
    scrape_interval = yaml.safe_load((SERVING / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert source["jsonData"]["timeInterval"] == scrape_interval
    used = {t["datasource"]["uid"] for p in dashboard.build()["panels"] for t in p.get("targets", [])}
    assert used == {dashboard.DATASOURCE_UID}
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "soilcast.yml").read_text())["providers"][0]
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in compose["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def _status(cfg) -> dict:
    """A realised-skill status as `soilcast daily` writes it: stable skilful; canary broken
    (below persistence at every lead), its latest forecast 2 days old; the latest observed day
    6 days old (late)."""
    now = dt.datetime.now(dt.timezone.utc)
    status = empty_status(cfg.operations.realised_window_days)
    status["latest_observed_day"] = (now - dt.timedelta(days=6)).date().isoformat()
    status["labels"] = {
        "stable": {"latest_issued": (now - dt.timedelta(hours=3)).isoformat(), "latest_init": "2020-01-31",
                   "version": 1, "awaiting": 7},
        "canary": {"latest_issued": (now - dt.timedelta(days=2)).isoformat(), "latest_init": "2020-01-29",
                   "version": 1, "awaiting": 14},
    }
    status["realised"] = [
        {"label": label, "lead": lead, "basin": basin, "basin_name": name, "rmse": 0.01 * lead,
         "skill_persistence": skill, "skill_climatology": skill + 0.3, "crps": 0.005 * lead, "n": 30 - lead}
        for label, skill in (("stable", 0.4), ("canary", -0.9)) for lead in range(1, 8)
        for basin, name in (("all", "all basins"), ("1", "Ganga"))]
    return status


def test_every_dashboard_query_returns_series_from_a_real_gateway(tmp_path):
    cfg = tiny_config(tmp_path)
    publish(cfg, 1)
    path = Layout.from_config(cfg).operations.status
    path.parent.mkdir(parents=True, exist_ok=True)
    write_status(path, _status(cfg))
    windows = cfg.serving.drift_min_windows  # drift series are absent before this many live windows
    with gateway(cfg) as gw, client(gw) as c:
        for i in range(windows):
            c.predict(meteo(cfg, np.random.default_rng(i)))
        assert gw.drift.flush(30)
        exported = {name for name, _ in scrape(gw.metrics_port)}
        with prometheus(tmp_path / "prometheus", {"soilcast-gateway": [f"127.0.0.1:{gw.metrics_port}"]},
                        [ALERTS]) as prom:
            stop = threading.Event()
            traffic = threading.Thread(target=_live_traffic, args=(gw, cfg, stop, windows), daemon=True)
            traffic.start()  # requests across scrapes all along: rate() and the latency quantiles see them
            try:
                board = dashboard.build()
                answered = []
                for title, expr in dashboard.queries(board):
                    promql = _substitute(expr)
                    answer = prom.answer(promql)
                    assert answer["status"] == "success", (title, promql, answer)
                    missing = set(re.findall(r"soilcast_\w+", promql)) - exported
                    assert not missing, (title, promql, "not exported by the gateway", missing)
                    started = time.monotonic()
                    result = prom.wait_for(promql, timeout=60)  # rate() needs two scrapes
                    print(f"{time.monotonic() - started:5.1f} s  {title}: {len(result)} series")
                    assert result, (title, promql)
                    values = [float(r["value"][1]) for r in result]
                    assert any(math.isfinite(v) for v in values), (title, promql, result)
                    answered.append(title)
                assert len(answered) == len(list(dashboard.queries(board))) > 20
                print(f"{len(answered)} dashboard queries answered")

                # the label variable's query, as Grafana runs label_values(metric, label)
                metric = re.fullmatch(r"label_values\((\w+), (\w+)\)", board["templating"]["list"][0]["query"])
                values = prom.api(f"label/{metric.group(2)}/values", **{"match[]": metric.group(1)})["data"]
                assert values == ["canary", "stable"]

                _check_verification_alerts(prom)
            finally:
                stop.set()
                traffic.join(timeout=30)


def _live_traffic(gw, cfg, stop: threading.Event, seeds: int) -> None:
    """A live Predict every half second until ``stop`` (the seeds the test sent already: valid
    requests; a failed call is traffic too and does not end the stream)."""
    import grpc

    with client(gw) as c:
        i = 0
        while not stop.wait(0.5):
            try:
                c.predict(meteo(cfg, np.random.default_rng(i % seeds)))
            except grpc.RpcError:
                pass
            i += 1


def _check_verification_alerts(prom) -> None:
    """The soilcast-verification rules on the real exported series: every expression parses;
    the broken canary's conditions hold (alerts pending or firing), stable's do not."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rules = next(g for g in groups if g["name"] == "soilcast-verification")["rules"]
    for rule in rules:
        assert prom.answer(rule["expr"])["status"] == "success", rule
    verified = prom.wait_for("soilcast:realised_skill_persistence:verified", timeout=30)
    assert {(r["metric"]["label"], r["metric"]["lead"]) for r in verified} == {
        (label, str(lead)) for label in ("stable", "canary") for lead in range(1, 8)}
    expected = {("SoilcastRealisedSkillBelowPersistence", "canary", "pending"),
                ("SoilcastCanaryStableDiverging", "", "pending"),
                ("SoilcastNoForecastIssued", "canary", "firing"),
                ("SoilcastObservationsLate", "", "firing")}
    deadline, seen = time.monotonic() + 30, set()
    while time.monotonic() < deadline and not expected <= seen:
        alerts = prom.api("alerts")["data"]["alerts"]
        seen = {(a["labels"]["alertname"], a["labels"].get("label", ""), a["state"]) for a in alerts}
        time.sleep(1)
    assert expected <= seen, seen
    assert not {s for s in seen if s[1] == "stable"}, seen
