"""Prometheus metrics of the gateway, in a registry of its own (several gateways can live in
one process, e.g. in tests, without clashing in the global default registry).

Names (all ``soilcast_``-prefixed; alert rules in ``serving/prometheus/alerts.yml`` use them):

- ``requests_total{protocol,method,code,version_label,version}``: every request of every
  protocol (``protocol`` tfs_grpc, tfs_rest, oip_rest, oip_grpc; ``method`` Predict,
  GetModelMetadata, GetModelStatus whatever the protocol calls them; ``code`` the status
  name, ``BUSY`` for a request over ``serving.max_concurrent_rpcs``), under the label and the
  version actually served: a request naming nothing that got ``stable`` counts as
  ``version_label="stable"``; never '': ``"(none)"`` (label and version) when no version was
  resolved (refused before), ``"(unlabelled)"`` for a served version no label points at; a
  label no models.config defines counts as ``"(unknown)"``, so invented labels cannot grow
  the series
- ``request_latency_seconds{protocol,method,signature,version}`` (histogram; every protocol's
  handling time in the core; ``signature`` the canonical name, ``"(unknown)"`` for a name the
  model does not have, ``"(none)"`` for metadata and status)
- ``requests_in_flight``: requests the core runs now (all protocols; never above
  ``serving.max_concurrent_rpcs``)
- ``warmup_empty_total``: versions loaded whose warm-up file held no record
- process metrics (``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ...)
  and ``python_info``; no ``_created`` series (``disable_created_metrics``)
- ``requests_by_traffic_total{traffic}``: requests by the traffic they declared (``live``,
  ``hindcast``, ``verification``: :data:`soilcast.serving.drift.TRAFFIC`; a separate counter
  because alert rules depend on ``requests_total``'s label set); a request naming an unknown
  traffic is refused (``invalid_requests_total{reason="bad_traffic"}``) and not counted here
- ``invalid_requests_total{reason}``: rejected inputs by reason (rank, shape, dtype,
  nonfinite, empty, unknown_input, malformed, unknown_model, unknown_version, oversized (wire
  or decoded size), batch (over serving.max_batch), ...)
- ``nonfinite_input_values_total{variable}``: NaN/inf input values (anywhere in the weather,
  inside the mask in antecedent soil moisture)
- ``output_clipped_values_total``: served soil moisture outside its physical range, clipped
  (the exported graph clips already: any count is a model bug)
- ``drift_<statistic>{kind,variable,version,version_label,reference}`` for each statistic of
  :data:`soilcast.serving.drift.STATISTICS` (``drift_psi``, ``drift_mean_shift``; one series
  per served version; ``version_label`` is stable/canary/previous or '';
  ``kind`` input or prediction; ``reference`` monthly / all_year (no date in the requests,
  or no monthly reference) / mixed, see :mod:`soilcast.serving.drift`). Published only from
  live traffic, and only once a version's window holds ``serving.drift_min_windows`` windows:
  before that the series are absent, so no alert can fire on a handful of requests;
  ``drift_updated_timestamp_seconds{version}``: when a version's drift was last published
  (absent with its series); ``drift_window_requests`` (windows in the newest version's window,
  published or not), ``drift_dropped_total``
- ``payload_log_dropped_total``: sampled Predicts the payload log skipped because its writer
  fell behind (:mod:`soilcast.serving.payload_log`)
- ``model_info{model,version,...}`` (Info), ``model_loaded`` (1 when a version serves),
  ``model_versions_loaded``, ``model_load_failures_total``
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)

from soilcast.serving.drift import STATISTICS, TRAFFIC

REFERENCES = ("monthly", "all_year", "mixed")  # values of the drift metrics' ``reference`` label
DRIFT_LABELS = ["kind", "variable", "version", "version_label", "reference"]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """All gateway metrics plus the HTTP endpoint that exposes them."""

    def __init__(self) -> None:
        disable_created_metrics()  # process-wide: a _created twin of every counter charts nothing
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.requests = Counter("soilcast_requests", "Requests of every protocol by method, status code, and the "
                                "label and version served", ["protocol", "method", "code", "version_label", "version"],
                                registry=r)
        self.in_flight = Gauge("soilcast_requests_in_flight", "Requests the serving core runs now, all protocols "
                               "(at most serving.max_concurrent_rpcs)", registry=r)
        self.warmup_empty = Counter("soilcast_warmup_empty", "Versions loaded whose warm-up file held no record",
                                    registry=r)
        self.by_traffic = Counter("soilcast_requests_by_traffic",
                                  "gRPC and REST requests by declared traffic (only live enters drift)",
                                  ["traffic"], registry=r)
        for traffic in TRAFFIC:  # every series exists from the start, so rate() sees the first one
            self.by_traffic.labels(traffic)
        self.latency = Histogram("soilcast_request_latency_seconds",
                                 "Handling time in the serving core, every protocol",
                                 ["protocol", "method", "signature", "version"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.invalid = Counter("soilcast_invalid_requests", "Rejected requests by reason",
                               ["reason"], registry=r)
        self.nonfinite = Counter("soilcast_nonfinite_input_values",
                                 "NaN/inf input values", ["variable"], registry=r)
        self.clipped = Counter("soilcast_output_clipped_values",
                               "Served soil moisture values outside the physical range, clipped",
                               registry=r)
        self.drift = {s.name: Gauge(f"soilcast_drift_{s.name}", s.help, DRIFT_LABELS, registry=r)
                      for s in STATISTICS}
        self.label_of: Callable[[int], str] = lambda version: ""  # set by the gateway
        self.window = Gauge("soilcast_drift_window_requests", "Forecast windows (batch elements) in the drift window",
                            registry=r)
        self.drift_dropped = Counter("soilcast_drift_dropped",
                                     "Requests skipped by drift monitoring (queue full)", registry=r)
        self.drift_updated = Gauge("soilcast_drift_updated_timestamp_seconds",
                                   "Unix time of the version's last drift publication", ["version"], registry=r)
        self.payload_dropped = Counter("soilcast_payload_log_dropped",
                                       "Sampled Predicts the payload log skipped (writer behind)", registry=r)
        self._drift_series: dict[str, set[tuple[str, ...]]] = {}  # version -> its published label sets
        self.model = Info("soilcast_model", "The newest serving model version", registry=r)
        self.loaded = Gauge("soilcast_model_loaded", "1 when at least one model version serves",
                            registry=r)
        self.versions = Gauge("soilcast_model_versions_loaded", "Model versions loaded", registry=r)
        self.load_failures = Counter("soilcast_model_load_failures",
                                     "Model versions refused at load", registry=r)
        self._http: Any = None
        self.port: int | None = None

    def count(self, protocol: str, method: str, code: str, label: str, version: str) -> None:
        self.requests.labels(protocol, method, code, label, version).inc()

    def observe(self, protocol: str, method: str, signature: str, version: str, seconds: float) -> None:
        self.latency.labels(protocol, method, signature, version).observe(seconds)

    def count_invalid(self, reason: str | None, nonfinite: dict[str, int]) -> None:
        """A refused request: its reason, and the NaN/inf values it carried per variable."""
        if reason:
            self.invalid.labels(reason).inc()
        for variable, n in nonfinite.items():
            self.nonfinite.labels(variable).inc(n)

    def serve(self, host: str, port: int, tls: tuple[Path, Path] | None = None) -> int:
        """Expose ``/metrics`` on ``host:port`` (0 = a free port), over TLS when ``tls`` is
        (cert, key), like the gRPC and REST ports; return the bound port."""
        certfile, keyfile = (str(tls[0]), str(tls[1])) if tls else (None, None)
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry,
                                                certfile=certfile, keyfile=keyfile)
        self.port = int(self._http.server_port)
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def publish_drift(self, version: int, stats: dict[tuple[str, str], dict[str, Any]],
                      n_requests: int) -> None:
        """Set ``version``'s drift gauges to ``stats``; ``{}`` (too few live windows yet)
        withdraws its series. Every series of the version not in this publication goes (a
        switched reference, a moved label), so a stale value cannot keep an alert firing."""
        v, label = str(version), self.label_of(version)
        current = {(kind, variable, v, label, str(s.get("reference", "all_year")))
                   for (kind, variable), s in stats.items()}
        for labels in self._drift_series.get(v, set()) - current:
            for gauge in self.drift.values():
                _remove(gauge, labels)
        for (kind, variable), s in stats.items():
            labels = (kind, variable, v, label, str(s.get("reference", "all_year")))
            for key, gauge in self.drift.items():
                if math.isnan(s[key]):
                    _remove(gauge, labels)
                else:
                    gauge.labels(*labels).set(s[key])
        self._drift_series[v] = current
        if current:
            self.drift_updated.labels(v).set_to_current_time()
        else:
            _remove(self.drift_updated, (v,))
        self.window.set(n_requests)

    def model_state(self, newest: dict[str, str] | None, n_versions: int) -> None:
        self.loaded.set(1 if newest else 0)
        self.versions.set(n_versions)
        self.model.info(newest or {"model": "", "version": ""})


def _remove(gauge: Gauge, labels: tuple[str, ...]) -> None:
    """Drop one series of ``gauge`` if it exists (prometheus_client raises KeyError otherwise)."""
    try:
        gauge.remove(*labels)
    except KeyError:
        pass
