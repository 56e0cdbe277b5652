"""The KServe InferenceService the export writes, and the serving/k8s manifests around it.

Versions are real stand-in SavedModels with their metadata (:mod:`soilcast.testing.serving`),
labelled as the export labels them; the rendered YAML is checked against the KServe SDK's
model classes out of process, in the clients' venv (:mod:`soilcast.testing.kserve_check`).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from soilcast.config import ConfigError, config_from_dict, load_config, yaml_load
from soilcast.export import kserve, savedmodel
from soilcast.records import Decision
from soilcast.repository import versions
from soilcast.testing import kserve_check
from soilcast.testing.clients import clients_python
from soilcast.testing.config import tiny_config
from soilcast.testing.serving import publish
from tests.conftest import PARAMS, REPO

K8S = REPO / "serving" / "k8s"
CHECKER = Path(kserve_check.__file__)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A model repository with versions 1 (stable) and 2 (a new export: canary)."""
    cfg = tiny_config(tmp_path_factory.mktemp("kserve"))
    models = Path(cfg.paths.models_dir)
    for v in (1, 2):
        publish(cfg, v)
        versions.land_as_canary(models, v, cfg.serving.model_name)
    return cfg, models


def _docs(path: Path) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(path.read_text()) if d is not None}


def _sdk_check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(clients_python()), str(CHECKER), str(path)], capture_output=True, text=True,
                          timeout=120)


def test_a_new_export_is_a_canary_revision_pinned_to_its_version(repo, tmp_path):
    cfg, models = repo
    assert versions.current_labels(models) == {"stable": 1, "canary": 2}
    docs = _docs(kserve.write_inference_service(cfg, models, tmp_path / kserve.ISVC_FILE))
    isvc, cm = docs["InferenceService"], docs["ConfigMap"]
    k = cfg.export.kserve
    predictor = isvc["spec"]["predictor"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["metadata"]["name"] == cfg.serving.model_name
    assert isvc["metadata"]["namespace"] == cm["metadata"]["namespace"] == k.namespace
    assert predictor["canaryTrafficPercent"] == k.canary_traffic_percent
    model = predictor["model"]
    assert model["modelFormat"] == {"name": "tensorflow"} and model["runtimeVersion"] == k.runtime_version
    assert model["storageUri"] == k.storage_uri
    assert model["resources"] == {"requests": {"cpu": k.cpu_request, "memory": k.memory_request},
                                  "limits": {"memory": k.memory_limit}}
    notes = isvc["metadata"]["annotations"]
    assert notes["soilcast/version"] == "2" and notes["soilcast/stable-version"] == "1"
    assert notes["soilcast/label"] == "canary" and notes["soilcast/signature"] == "serving_default"
    assert notes["soilcast/leads"] == ",".join(map(str, cfg.window.leads))
    # the revision serves version 2 only: its own ConfigMap, mounted and passed to TF Serving
    assert predictor["volumes"] == [{"name": "model-config", "configMap": {"name": cm["metadata"]["name"]}}]
    assert cm["metadata"]["name"] == f"{cfg.serving.model_name}-v2-model-config"
    mount = model["volumeMounts"][0]["mountPath"]
    assert model["args"] == [f"--model_config_file={mount}/{kserve.CONFIG_FILE}"]
    pinned = cm["data"][kserve.CONFIG_FILE]
    assert re.findall(r"versions: (\d+)", pinned) == ["2"] and f'base_path: "{kserve.KSERVE_MODEL_DIR}"' in pinned
    assert f'name: "{cfg.serving.model_name}"' in pinned


def test_stable_alone_takes_all_the_traffic(repo, tmp_path):
    cfg, models = repo
    isvc = kserve.render_for_labels(cfg, models, {"stable": 2, "canary": 2})[1]
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert isvc["metadata"]["annotations"]["soilcast/label"] == "stable"
    assert "soilcast/stable-version" not in isvc["metadata"]["annotations"]
    assert kserve.render_for_labels(cfg, models, {"stable": 1})[0]["metadata"]["name"].endswith("-v1-model-config")


def test_labels_at_a_missing_version_are_refused_by_name(repo):
    cfg, models = repo
    with pytest.raises(FileNotFoundError, match="version 7, which is not published"):
        kserve.render_for_labels(cfg, models, {"stable": 1, "canary": 7})


def test_rendered_manifest_passes_the_kserve_sdk_classes(repo, tmp_path):
    cfg, models = repo
    path = kserve.write_inference_service(cfg, models, tmp_path / kserve.ISVC_FILE)
    done = _sdk_check(path)
    assert done.returncode == 0, done.stderr
    assert '"class": "V1beta1InferenceService"' in done.stdout and '"class": "V1ConfigMap"' in done.stdout


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p.update(canaryTraficPercent=p.pop("canaryTrafficPercent")), "has no field ['canaryTraficPercent']"),
    (lambda p: p.update(canaryTrafficPercent="10"), "expected int, found str"),
    (lambda p: p["model"]["resources"]["requests"].update(cpu=2), "expected str, found int"),
])
def test_the_sdk_check_refuses_unknown_keys_and_wrong_types(repo, tmp_path, edit, expected):
    """The SDK's own deserialiser would drop the misspelt key: the check names it instead."""
    cfg, models = repo
    docs = kserve.render_for_labels(cfg, models, versions.current_labels(models))
    edit(docs[1]["spec"]["predictor"])
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    done = _sdk_check(path)
    assert done.returncode == 1 and expected in done.stderr, done.stderr


def _decision(path: Path, blessed: bool) -> Path:
    Decision.from_json({"primary_metric": "rmse", "selected_on": "validation", "leads": [1], "best_reference": {},
                        "candidates": {}, "winner": None, "thresholds": {}, "champion": None,
                        "reasons": ["test: not blessed"], "blessed": blessed}).write(path)
    return path


def test_the_export_step_writes_it_beside_its_record_even_when_skipped(repo, tmp_path):
    """Not blessed: the record says skipped and the InferenceService still says what serves
    (an output of the DVC stage must exist); an empty repository gives a comment-only file."""
    cfg, models = repo
    blessing = _decision(tmp_path / "blessing.json", blessed=False)
    out = tmp_path / "export" / "export.json"
    out.parent.mkdir()
    call = dict(metrics_file=tmp_path / "none.json", runs={}, tensors_store=tmp_path / "none.zarr", out_file=out)
    assert savedmodel.export_blessed(cfg, blessing, models_dir=models, **call) is None
    written = kserve.inference_service_file(out)
    assert written == out.parent / "inferenceservice.yaml"
    assert _docs(written)["InferenceService"]["metadata"]["annotations"]["soilcast/version"] == "2"
    assert savedmodel.export_blessed(cfg, blessing, models_dir=tmp_path / "empty", **call) is None
    text = written.read_text()
    assert "nothing to deploy" in text and not [d for d in yaml.safe_load_all(text) if d is not None]
    elsewhere = tmp_path / "k8s" / "soilcast.yaml"  # a place of the caller's choosing
    savedmodel.export_blessed(cfg, blessing, models_dir=models, inference_service=elsewhere, **call)
    assert _docs(elsewhere)["InferenceService"]["metadata"]["annotations"]["soilcast/version"] == "2"


def test_kserve_settings_match_the_tf_serving_image_and_volumes():
    """runtimeVersion is the TF Serving tag the project's image uses; storageUri names the
    models claim; resources are TF Serving's in serving/k8s/tfserving.yaml."""
    k = load_config(PARAMS).export.kserve
    tag = re.search(r"^ARG TF_SERVING_VERSION=(\S+)$", (REPO / "serving" / "Dockerfile.serving").read_text(), re.M)
    assert tag and k.runtime_version == tag.group(1)
    claim = yaml.safe_load((K8S / "models-pvc.yaml").read_text())["metadata"]["name"]
    assert re.fullmatch(rf"pvc://{claim}(/.*)?", k.storage_uri)
    tfs = next(d for d in yaml.safe_load_all((K8S / "tfserving.yaml").read_text()) if d["kind"] == "Deployment")
    res = tfs["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res == {"requests": {"cpu": k.cpu_request, "memory": k.memory_request}, "limits": {"memory": k.memory_limit}}
    assert k.namespace == yaml.safe_load((K8S / "namespace.yaml").read_text())["metadata"]["name"]


@pytest.mark.parametrize("key, value, expected", [
    ("storage_uri", "soilcast-models", "expected pvc://<claim>"),
    ("storage_uri", "pvc://Soilcast_Models", "expected pvc://<claim>"),
    ("canary_traffic_percent", 100, "canary_traffic_percent"),
    ("memory_limit", "8 GB", "memory_limit"),
])
def test_bad_kserve_settings_are_refused_by_name(key, value, expected):
    raw = yaml_load(PARAMS.read_text())
    raw["export"]["kserve"][key] = value
    with pytest.raises(ConfigError, match=re.escape(expected)):
        config_from_dict(raw, "params.yaml")


# --------------------------------------------------------------------------- serving/k8s


def _k8s(kind: str, name: str) -> dict:
    docs = [d for f in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d is not None]
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"serving/k8s has no {kind} {name}"
    return found[0]


def test_k8s_gateway_serves_tls_from_a_mounted_secret():
    """Probe hole: the k8s gateway bound 0.0.0.0 without TLS."""
    pod = _k8s("Deployment", "gateway")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    args = c["args"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret = next((name for name, v in volumes.items() if "secret" in v), None)
    assert secret, "the gateway mounts no Secret: it serves without TLS"
    assert mounts[secret]["readOnly"] is True
    where = mounts[secret]["mountPath"]
    assert args[args.index("--tls-cert") + 1] == f"{where}/tls.crt"  # the keys of a kubernetes.io/tls Secret
    assert args[args.index("--tls-key") + 1] == f"{where}/tls.key"
    assert volumes[secret]["secret"]["defaultMode"] & 0o007 == 0, "the key must not be world-readable"
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["scheme"] == "HTTPS", probe


def _ports(rule: dict) -> set:
    return {p["port"] for p in rule["ports"]}


def test_network_policy_lets_only_this_namespace_clients_and_prometheus_reach_the_gateway():
    """Probe hole: no NetworkPolicy restricted who reaches the gateway."""
    gw = _k8s("Deployment", "gateway")
    named = {p["name"] for p in gw["spec"]["template"]["spec"]["containers"][0]["ports"]}
    policy = _k8s("NetworkPolicy", "gateway")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= gw["spec"]["template"]["metadata"]["labels"].items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    api, metrics = policy["ingress"]
    assert _ports(api) == {"grpc", "rest"} and _ports(metrics) == {"metrics"} and named == {"grpc", "rest", "metrics"}
    assert api["from"] == [{"podSelector": {}},  # this namespace only (no namespaceSelector: {})
                           {"namespaceSelector": {"matchLabels": {"soilcast/gateway-client": "true"}}}]
    assert metrics["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    peers = [p for rule in policy["egress"] for p in rule["to"]]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "tfserving"}}} in peers
    assert all(p != {} and "ipBlock" not in p for p in peers), "egress must not be open"


def test_network_policy_keeps_tfserving_behind_the_gateway():
    policy = _k8s("NetworkPolicy", "tfserving")["spec"]
    sources = {p["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for r in policy["ingress"] for p in r["from"]}
    assert sources == {"gateway", "prometheus"} and policy["egress"] == []
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}


def test_kustomization_lists_the_network_policy():
    assert "network-policy.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
