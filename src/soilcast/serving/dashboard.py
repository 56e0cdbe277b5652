"""The operator's Grafana dashboard, generated from this one source.

Built with Grafana's own ``grafana-foundation-sdk`` (builders generated from Grafana's
schema), not hand-written dicts: a misspelt option fails here, at build time, not silently in
Grafana. Its PyPI versions are ``<build epoch>!<Grafana line>``, so an unpinned install picks
the newest build's first line (10.1); requirements.lock pins the Grafana 11.6 line, the line
of the grafana-oss image in ``serving/docker-compose.yml``. The committed JSON model,
``serving/grafana/dashboards/soilcast.json``, is :func:`render`'s output (a test keeps them
identical); regenerate it after an edit here with::

    python -m soilcast.serving.dashboard serving/grafana/dashboards/soilcast.json

Grafana loads it through the provisioning files in ``serving/grafana/provisioning`` (the
Prometheus data source of uid :data:`DATASOURCE_UID`, at http://prometheus:9090).

Rows: realised skill of the verified forecasts (``soilcast daily``'s status, per label and
lead), freshness (age of the latest forecast and observed day, forecasts awaiting
verification), drift, traffic (request rate by protocol/method/code and by traffic, latency
p50/p95 by protocol, requests in flight, resident memory)
and the served models. The ``$label`` variable (stable, canary) filters the per-label panels.
Every query is PromQL for the data source; :func:`queries` lists them (the test runs each one
against a real Prometheus scraping a real gateway).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common, prometheus, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus as prometheus_model

UID = "soilcast"
DATASOURCE_UID = "soilcast-prometheus"  # serving/grafana/provisioning/datasources/prometheus.yml
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
OUTPUT = Path("serving/grafana/dashboards/soilcast.json")  # relative to the repository root
RATE = "$__rate_interval"  # Grafana's rate window: >= 4 scrape intervals (the data source's timeInterval)
LABEL = 'label=~"$label"'  # the dashboard's label variable, multi-valued (a regex)
SKILL = 'basin="all"'  # whole-mask values; per-basin rows carry basin=<id>
M3 = "suffix: m³/m³"  # volumetric soil moisture


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    """One PromQL target of the soilcast data source."""
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


def steps(*pairs: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds: (None, base colour), then (value, colour) upwards."""
    return (dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in pairs]))


def graph(title: str, description: str, *targets: prometheus.Dataquery, unit: str = "none",
          thresholds: dash.ThresholdsConfig | None = None, width: int = 12, height: int = 8) -> timeseries.Panel:
    """A time-series panel (thresholds drawn as lines)."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).span(width).height(height)
             .legend(common.VizLegendOptions().display_mode(common_model.LegendDisplayMode.LIST)
                     .placement(common_model.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(common.VizTooltipOptions().mode(common_model.TooltipDisplayMode.MULTI)
                      .sort(common_model.SortOrder.DESCENDING)))
    for target in targets:
        panel = panel.with_target(target)
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_model.GraphThresholdsStyleMode.LINE))
    return panel


def number(title: str, description: str, target: prometheus.Dataquery, unit: str = "none",
           thresholds: dash.ThresholdsConfig | None = None, width: int = 6) -> stat.Panel:
    """A stat panel (one big number per series)."""
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE)
             .with_target(target).unit(unit).span(width).height(5)
             .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .graph_mode(common_model.BigValueGraphMode.NONE))
    return panel.thresholds(thresholds) if thresholds is not None else panel


def listing(title: str, description: str, target: prometheus.Dataquery, width: int = 12) -> table.Panel:
    """A table of the series' labels (an instant query)."""
    return (table.Panel().title(title).description(description).datasource(DATASOURCE)
            .with_target(target.format(prometheus_model.PromQueryFormat.TABLE)).span(width).height(6)
            .show_header(True))


def label_variable() -> dash.QueryVariable:
    """``$label``: the labels the daily run forecasts with (from its status), all by default."""
    return (dash.QueryVariable("label").label("Label").datasource(DATASOURCE)
            .query("label_values(soilcast_latest_forecast_issued_timestamp_seconds, label)")
            .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD).sort(model.VariableSort.ALPHABETICAL_ASC)
            .multi(True).include_all(True)
            .current(model.VariableOption(selected=True, text="All", value="$__all")))


def realised_row() -> tuple[str, list[Any]]:
    """Realised skill of the verified archived forecasts (``soilcast daily``; window of
    ``operations.realised_window_days``), by label and lead, whole mask."""
    by = f"{{{LABEL}, {SKILL}}}"
    legend = "{{label}} lead {{lead}}"
    return "Realised skill (verified forecasts, whole mask)", [
        graph("Realised skill vs persistence by lead",
              "MSE skill 1 - MSE/MSE_persistence of the verified forecasts over the realised window. Below 0: "
              "worse than 'tomorrow = today' (alert SoilcastRealisedSkillBelowPersistence after 14 days).",
              query(f'max by (label, lead) (soilcast_realised_skill{{{LABEL}, {SKILL}, reference="persistence"}})',
                    legend), thresholds=steps((None, "red"), (0, "green"))),
        graph("Realised skill vs climatology by lead",
              "MSE skill against the day-of-year climatology of the training years.",
              query(f'max by (label, lead) (soilcast_realised_skill{{{LABEL}, {SKILL}, reference="climatology"}})',
                    legend), thresholds=steps((None, "red"), (0, "green"))),
        graph("Realised RMSE by lead", "RMSE of the verified forecasts over the realised window.",
              query(f"max by (label, lead) (soilcast_realised_rmse{by})", legend), unit=M3),
        graph("Realised CRPS by lead", "CRPS of the verified quantile forecasts (probabilistic versions only).",
              query(f"max by (label, lead) (soilcast_realised_crps{by})", legend), unit=M3),
        graph("Verified forecasts behind each value",
              "How many verified forecasts each realised value rests on (the skill alerts wait for 7).",
              query(f"max by (label, lead) (soilcast_realised_forecasts{by})", legend), width=24, height=6),
    ]


def freshness_row() -> tuple[str, list[Any]]:
    """Is the daily run issuing, and is verification's truth arriving?"""
    day, hour = 86400, 3600
    daily = steps((None, "green"), (26 * hour, "orange"), (36 * hour, "red"))
    return "Freshness", [
        number("Age of the latest forecast",
               "Since the latest forecast of each label was issued (alert SoilcastNoForecastIssued after 36 h).",
               query(f"time() - max by (label) (soilcast_latest_forecast_issued_timestamp_seconds{{{LABEL}}})",
                     "{{label}}", instant=True), unit="s", thresholds=daily),
        number("Age of the latest observed day",
               "Since 00 UTC of the store's latest observed day. A day is due the next day, so 1 day is on "
               "time (alert SoilcastObservationsLate beyond 1 + 3 days).",
               query("time() - max(soilcast_latest_observed_day_timestamp_seconds)", "observed", instant=True),
               unit="s", thresholds=steps((None, "green"), (2 * day, "orange"), (4 * day, "red"))),
        number("Forecasts awaiting verification",
               "Archived forecasts with a lead whose valid day is not observed yet.",
               query(f"max by (label) (soilcast_forecasts_awaiting_verification{{{LABEL}}})", "{{label}}",
                     instant=True)),
        number("Age of the verification status", "Since the daily run last wrote the realised-skill status.",
               query("time() - max(soilcast_verification_updated_timestamp_seconds)", "status", instant=True),
               unit="s", thresholds=daily),
    ]


def drift_row() -> tuple[str, list[Any]]:
    """Drift of the live requests against the training reference (serving/drift.py)."""
    psi = steps((None, "green"), (0.1, "orange"), (0.25, "red"))  # the drift alerts' bands
    legend = "{{variable}} v{{version}} {{version_label}}"
    return "Drift (live requests against the training reference)", [
        graph("Input drift PSI by variable and version",
              "PSI of the request weather against the training weather (0.1 drifting, 0.25 shifted).",
              query('max by (variable, version, version_label) (soilcast_drift_psi{kind="input"})', legend),
              thresholds=psi),
        graph("Prediction drift PSI by version",
              "PSI of the served soil moisture against the training-years soil moisture.",
              query('max by (variable, version, version_label) (soilcast_drift_psi{kind="prediction"})', legend),
              thresholds=psi),
        number("Drift last updated", "Since each version's drift gauges were last updated (none before "
               "serving.drift_min_windows live windows arrived).",
               query("time() - max by (version) (soilcast_drift_updated_timestamp_seconds)", "v{{version}}",
                     instant=True), unit="s", width=12),
        number("Drift window", "Forecast windows (batch elements) in the current drift window of each gateway.",
               query("max(soilcast_drift_window_requests)", "windows", instant=True), width=12),
    ]


def traffic_row() -> tuple[str, list[Any]]:
    """Requests through the gateway, every protocol (TF Serving gRPC/REST, Open Inference
    Protocol REST/gRPC), and what they cost the process."""
    latency = [query(f"histogram_quantile({q}, sum by (le, protocol, method) "
                     f"(rate(soilcast_request_latency_seconds_bucket[{RATE}])))", f"{{{{protocol}}}} {{{{method}}}} p{p}",
                     ref)
               for q, p, ref in ((0.5, 50, "A"), (0.95, 95, "B"))]
    return "Traffic", [
        graph("Request rate by protocol, method and code", "Requests per second of every protocol; code BUSY: over "
              "serving.max_concurrent_rpcs.",
              query(f"sum by (protocol, method, code) (rate(soilcast_requests_total[{RATE}]))",
                    "{{protocol}} {{method}} {{code}}"), unit="reqps"),
        graph("Request rate by traffic", "Live forecasts, hindcasts and verification requests per second.",
              query(f"sum by (traffic) (rate(soilcast_requests_by_traffic_total[{RATE}]))", "{{traffic}}"),
              unit="reqps"),
        graph("Latency p50 / p95 by protocol and method",
              "Handling time in the serving core, every protocol, from the latency histogram.", *latency,
              unit="s", width=24),
        graph("Requests in flight", "Requests each gateway's core runs at once, all protocols (at most "
              "serving.max_concurrent_rpcs).", query("max by (instance) (soilcast_requests_in_flight)",
                                                     "{{instance}}")),
        graph("Gateway resident memory", "Resident memory of each gateway process (big REST bodies, loaded "
              "versions).", query('process_resident_memory_bytes{job="soilcast-gateway"}', "{{instance}}"),
              unit="bytes"),
    ]


def models_row() -> tuple[str, list[Any]]:
    """What the gateways serve."""
    return "Models", [
        number("Model loaded", "1 when at least one model version serves (alert SoilcastNoModelLoaded at 0).",
               query("min(soilcast_model_loaded)", "loaded", instant=True),
               thresholds=steps((None, "red"), (1, "green"))),
        number("Model versions loaded", "Versions a gateway serves (stable, canary, previous).",
               query("max(soilcast_model_versions_loaded)", "versions", instant=True)),
        listing("Newest serving version", "soilcast_model_info of each gateway.",
                query("soilcast_model_info", instant=True)),
        listing("Versions and their labels",
                "The versions live traffic reached, with the label each serves under (from the drift series).",
                query("count by (version, version_label) (soilcast_drift_psi)", instant=True), width=24),
    ]


ROWS = (realised_row, freshness_row, drift_row, traffic_row, models_row)


def build() -> dict[str, Any]:
    """The dashboard's JSON model. Rows stay expanded, so (Grafana's rule) each row's panels
    follow it at the top level rather than nested in it; ids are assigned in order."""
    board = (dash.Dashboard("soilcast serving").uid(UID)
             .description("Realised skill, freshness, drift, traffic and models of the soilcast forecast service.")
             .tags(["soilcast"]).time("now-30d", "now").refresh("1m").timezone("utc")
             .tooltip(model.DashboardCursorSync.CROSSHAIR)
             .with_variable(label_variable()))
    ids = iter(range(1, 1000))
    for row in ROWS:
        title, panels = row()
        board = board.with_row(dash.Row(title).id(next(ids)))
        for panel in panels:
            board = board.with_panel(panel.id(next(ids)))
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render() -> str:
    """The JSON file's text."""
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every target of ``board``, rows' panels included."""
    for panel in board.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else OUTPUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
