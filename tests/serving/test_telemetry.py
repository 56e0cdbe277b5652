"""Monitoring configuration: alert rules (promtool), deploy configs, and a real Prometheus."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from soilcast.config import load_config
from soilcast.testing.config import tiny_config
from soilcast.testing.prometheus import prometheus, require
from soilcast.testing.serving import client, gateway, meteo, publish
from tests.conftest import PARAMS, REPO

pytestmark = pytest.mark.timeout(120)
SERVING = REPO / "serving"
PROM = SERVING / "prometheus"


def _yaml_docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_every_serving_yaml_parses():
    files = sorted(SERVING.rglob("*.yml")) + sorted(SERVING.rglob("*.yaml"))
    assert {f.name for f in files} >= {"alerts.yml", "alerts_test.yml", "prometheus.yml",
                                       "docker-compose.yml", "gateway.yaml", "tfserving.yaml"}
    for f in files:
        assert _yaml_docs(f), f


def test_compose_runs_tfserving_gateway_proxy_and_prometheus():
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"tfserving", "gateway", "prometheus", "grafana"}
    cmd = services["gateway"]["command"]
    assert cmd[:2] == ["soilcast", "serve"] and cmd[cmd.index("--upstream") + 1] == "tfserving:8500"
    s = load_config(PARAMS).serving
    published = [p for svc in services.values() for p in svc.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in published), published
    assert f"127.0.0.1:{s.grpc_port}:{s.grpc_port}" in services["gateway"]["ports"]
    assert f"127.0.0.1:{s.metrics_port}:{s.metrics_port}" in services["gateway"]["ports"]
    assert f"127.0.0.1:{s.rest_port}:{s.rest_port}" in services["gateway"]["ports"]
    assert (SERVING / services["tfserving"]["build"]["dockerfile"].split("/", 1)[1]).is_file()
    # the daily run's status.json (realised skill) reaches the gateway read-only, at /app/<artifacts>
    assert "../artifacts/operations:/app/artifacts/operations:ro" in services["gateway"]["volumes"]
    grafana = services["grafana"]
    image, tag = grafana["image"].rsplit(":", 1)
    assert image == "grafana/grafana-oss" and re.fullmatch(r"\d+\.\d+\.\d+", tag), grafana["image"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    mounts = {v.split(":")[0]: v for v in grafana["volumes"]}
    for folder in ("./grafana/provisioning", "./grafana/dashboards"):
        assert mounts[folder].endswith(":ro") and (SERVING / folder).is_dir(), mounts


def test_k8s_prometheus_differs_only_in_scraping_the_gateway_over_tls_with_a_mounted_ca():
    compose = yaml.safe_load((PROM / "prometheus.yml").read_text())
    k8s = yaml.safe_load((PROM / "prometheus-k8s.yml").read_text())
    gateway = next(j for j in k8s["scrape_configs"] if j["job_name"] == "soilcast-gateway")
    assert gateway.pop("scheme") == "https"
    tls = gateway.pop("tls_config")
    assert k8s == compose  # nothing else differs
    assert tls["server_name"] == "gateway" and "insecure_skip_verify" not in tls
    docs = _yaml_docs(SERVING / "k8s" / "prometheus.yaml")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert Path(tls["ca_file"]).parent == Path(mounts["gateway-ca"])
    assert secrets == {"gateway-ca": "gateway-ca"}  # the CA only, never the gateway's key (gateway-tls)


def test_prometheus_scrapes_gateway_and_tfserving_on_configured_ports():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    s = load_config(PARAMS).serving
    assert jobs["soilcast-gateway"]["static_configs"][0]["targets"] == [f"gateway:{s.metrics_port}"]
    assert jobs["tfserving"]["metrics_path"] == "/monitoring/prometheus/metrics"
    assert jobs["tfserving"]["static_configs"][0]["targets"] == ["tfserving:8501"]
    text = (SERVING / "monitoring.config").read_text()
    assert re.search(r'prometheus_config\s*\{\s*enable:\s*true\s*path:\s*"/monitoring/prometheus/metrics"\s*\}', text)


def test_k8s_manifests_mirror_compose():
    docs = [d for f in sorted((SERVING / "k8s").glob("*.yaml")) if f.name != "kustomization.yaml"
            for d in _yaml_docs(f)]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {("Deployment", "tfserving"), ("Service", "tfserving"), ("Deployment", "gateway"),
            ("Service", "gateway"), ("Deployment", "prometheus"), ("ConfigMap", "prometheus-config"),
            ("PersistentVolumeClaim", "soilcast-models"), ("Namespace", "soilcast")} <= kinds
    listed = set(yaml.safe_load((SERVING / "k8s" / "kustomization.yaml").read_text())["resources"])
    assert listed == {f.name for f in (SERVING / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    gw = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway")
    args = gw["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--upstream") + 1] == "tfserving:8500"
    container = gw["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    s = load_config(PARAMS).serving
    assert ports == {"grpc": s.grpc_port, "rest": s.rest_port, "metrics": s.metrics_port}
    # the k8s gateway serves TLS on every port (Secret gateway-tls): its probes speak HTTPS
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "rest", "scheme": "HTTPS"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "rest", "scheme": "HTTPS"}
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    assert cm["data"]["prometheus.yml"] == (PROM / "prometheus-k8s.yml").read_text()
    assert cm["data"]["alerts.yml"] == (PROM / "alerts.yml").read_text()


def _need(binary: str) -> str:
    """The binary's path; a missing one fails the test (never a silent skip of the monitoring checks)."""
    try:
        return require(binary)
    except FileNotFoundError as err:
        pytest.fail(str(err), pytrace=False)


def test_serving_containers_run_unprivileged():
    """Issue 12.5: every serving Deployment runs as non-root with no privileges, capabilities
    or writable root file system, and the TF Serving image switches to a non-root USER."""
    deployments = [d for f in sorted((SERVING / "k8s").glob("*.yaml")) for d in _yaml_docs(f)
                   if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {"tfserving", "gateway", "prometheus"}
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        name = d["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, (name, c["name"])
            assert sc.get("readOnlyRootFilesystem") is True, (name, c["name"])
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], (name, c["name"])
            assert not sc.get("capabilities", {}).get("add"), (name, c["name"])
    users = re.findall(r"^USER\s+(\S+)", (SERVING / "Dockerfile.serving").read_text(), re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    tfs = next(d for d in deployments if d["metadata"]["name"] == "tfserving")
    assert users[-1].split(":")[0] == str(tfs["spec"]["template"]["spec"]["securityContext"]["runAsUser"])



def _promtool(*args: str) -> subprocess.CompletedProcess:
    _need("promtool")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_alert_rules_pass_promtool_unit_tests():
    check = _promtool("check", "rules", str(PROM / "alerts.yml"))
    assert check.returncode == 0, check.stdout + check.stderr
    # the verification rules wait days: their tests evaluate hourly, in a file of their own
    run = _promtool("test", "rules", str(PROM / "alerts_test.yml"), str(PROM / "alerts_verification_test.yml"))
    assert run.returncode == 0, run.stdout + run.stderr
    rules = {r.get("alert") for g in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
             for r in g["rules"]}
    assert {"SoilcastDriftWarning", "SoilcastDriftCritical", "SoilcastPredictionDriftWarning",
            "SoilcastPredictionDriftCritical", "SoilcastDriftWithoutDates", "SoilcastHighErrorRatio",
            "SoilcastNoModelLoaded", "SoilcastGatewayDown", "SoilcastRealisedSkillBelowPersistence",
            "SoilcastNoForecastIssued", "SoilcastObservationsLate", "SoilcastCanaryStableDiverging"} <= rules


def test_withdrawn_drift_takes_its_publication_time_along():
    """Drift of a version whose window holds too few live windows again (a reloaded version
    starts a new window) is absent, timestamp included: no stale value can keep an alert up."""
    from soilcast.serving.telemetry import Telemetry

    t = Telemetry()
    key = ("input", "t2m")
    t.publish_drift(1, {key: {"psi": 0.4, "mean_shift": 1.0, "reference": "all_year"}}, 20)
    published = _samples(t)
    assert published["soilcast_drift_psi"] == [{"kind": "input", "variable": "t2m", "version": "1",
                                                "version_label": "", "reference": "all_year"}]
    assert [s["version"] for s in published["soilcast_drift_updated_timestamp_seconds"]] == ["1"]
    t.publish_drift(1, {}, 2)
    withdrawn = _samples(t)
    for name in ("soilcast_drift_psi", "soilcast_drift_mean_shift", "soilcast_drift_updated_timestamp_seconds"):
        assert name not in withdrawn, (name, withdrawn[name])


def test_a_moved_label_leaves_no_stale_drift_series():
    """Promotion moves a version from canary to stable: its series follow, the old ones go."""
    from soilcast.serving.telemetry import Telemetry

    t, label = Telemetry(), {"now": "canary"}
    t.label_of = lambda version: label["now"]
    stats = {("input", "t2m"): {"psi": 0.02, "mean_shift": 0.0, "reference": "monthly"}}
    t.publish_drift(2, stats, 20)
    label["now"] = "stable"
    t.publish_drift(2, stats, 20)
    assert [s["version_label"] for s in _samples(t)["soilcast_drift_psi"]] == ["stable"]


def test_requests_by_traffic_exist_from_the_start():
    """Every traffic's series is there (at 0) before its first request, so rate() sees it."""
    from soilcast.serving.drift import TRAFFIC
    from soilcast.serving.telemetry import Telemetry

    by = _samples(Telemetry())["soilcast_requests_by_traffic_total"]
    assert sorted(s["traffic"] for s in by) == sorted(TRAFFIC) == ["hindcast", "live", "verification"]


def test_no_created_twins_and_the_process_is_measured():
    """An operator charting the gateway saw a ``_created`` twin of every counter and no
    memory or CPU of the process; now the opposite."""
    from soilcast.serving.telemetry import Telemetry

    t = Telemetry()
    t.count("tfs_rest", "Predict", "OK", "stable", "1")
    t.observe("tfs_rest", "Predict", "serving_default", "1", 0.01)
    names = set(_samples(t))
    assert not [n for n in names if n.endswith("_created")], sorted(names)
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= names
    assert _samples(t)["soilcast_request_latency_seconds_count"] == [
        {"protocol": "tfs_rest", "method": "Predict", "signature": "serving_default", "version": "1"}]


def _samples(t) -> dict[str, list[dict[str, str]]]:
    """{sample name: [labels of each sample]} of a Telemetry's registry."""
    out: dict[str, list[dict[str, str]]] = {}
    for family in t.registry.collect():
        for s in family.samples:
            out.setdefault(s.name, []).append(dict(s.labels))
    return out


def test_real_prometheus_scrapes_the_drift_series(tmp_path):
    _need("prometheus")
    cfg = tiny_config(tmp_path)
    publish(cfg, 1)
    with gateway(cfg) as gw:
        with client(gw) as c:  # drift is published once the window holds drift_min_windows windows
            for i in range(cfg.serving.drift_min_windows):
                c.predict(meteo(cfg, np.random.default_rng(i)))
        assert gw.drift.flush(30)
        with prometheus(tmp_path / "prometheus", {"soilcast-gateway": [f"127.0.0.1:{gw.metrics_port}"]},
                        [PROM / "alerts.yml"]) as prom:
            result = prom.wait_for('soilcast_drift_psi{kind="input"}', timeout=60)
            variables = {r["metric"]["variable"] for r in result}
            assert variables == set(cfg.variable_names), result
            assert all(r["metric"]["job"] == "soilcast-gateway" for r in result)
            assert float(prom.query('up{job="soilcast-gateway"}')[0]["value"][1]) == 1
            assert float(prom.query("soilcast_model_loaded")[0]["value"][1]) == 1
            groups = prom.api("rules")["data"]["groups"]
            assert {"soilcast-drift", "soilcast-serving", "soilcast-verification"} <= {g["name"] for g in groups}
