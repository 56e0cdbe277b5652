"""The KServe ``InferenceService`` of the labelled versions, written by the export step.

Kubeflow's serving layer is KServe; its TF Serving runtime (``modelFormat: tensorflow``)
serves a model repository laid out as TF Serving's base path: ``storageUri`` (the claim of
``serving/k8s/models-pvc.yaml``, whose root is ``paths.models_dir``) is made available to the
runtime at ``/mnt/models``, and TF Serving serves what it finds there.

Why a pinned model config beside it: left alone, TF Serving serves the NEWEST version under
its base path, so every KServe revision would serve whatever was exported last and a canary
split (``canaryTrafficPercent``) would send both shares to the same model. Each rendered
revision therefore mounts a ConfigMap named after its version holding a TF Serving
``ModelServerConfig`` with the ``specific`` policy (that one version), passed to the runtime as
``--model_config_file`` (which overrides the runtime's ``--model_base_path``). A new revision
gets a new ConfigMap; the previous revision keeps its own, so it keeps serving its version.

What is rendered follows the repository's labels (``models.config``, kept by
:mod:`soilcast.repository.versions`): a ``canary`` beside a different ``stable`` is rendered as
the new revision with ``canaryTrafficPercent`` (``export.kserve.canary_traffic_percent``),
KServe sending the rest to the previously rolled-out revision (stable's); otherwise ``stable``
is rendered with all the traffic. The file lives beside the export record
(:func:`inference_service_file`) and is written after every export run, so it always says
what the repository serves: ``kubectl apply -f`` it (``serving/k8s/README.md``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from soilcast.config import Config
from soilcast.contract import LEADS, SIGNATURE
from soilcast.layout import ISVC_FILE

API_VERSION = "serving.kserve.io/v1beta1"
MODEL_FORMAT = "tensorflow"  # KServe's TF Serving runtime
KSERVE_MODEL_DIR = "/mnt/models"  # where KServe makes storageUri's content available
CONFIG_VOLUME = "model-config"
CONFIG_DIR = "/etc/soilcast"  # where the pinned model config is mounted in the predictor
CONFIG_FILE = "models.config"
ANNOTATION = "soilcast/"  # prefix of soilcast's own annotation keys
PART_OF = {"app.kubernetes.io/part-of": "soilcast"}
NON_ROOT_UID = 1000  # as serving/k8s/tfserving.yaml
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def inference_service_file(out_file: Path) -> Path:
    """Where the export writes the InferenceService: beside its record ``out_file``
    (``artifacts/export/inferenceservice.yaml`` in the DVC layout)."""
    return Path(out_file).with_name(ISVC_FILE)


def config_map_name(cfg: Config, version: int) -> str:
    """The pinned model config of ``version``: one per version, so revisions never share one."""
    return f"{_resource_name(cfg)}-v{int(version)}-model-config"


def _resource_name(cfg: Config) -> str:
    name = cfg.serving.model_name
    if not DNS_LABEL.fullmatch(name):
        raise ValueError(f"serving.model_name {name!r}: KServe names the InferenceService after it, "
                         "so it must be a DNS-1123 label (lower-case letters, digits, '-', at most 63)")
    return name


def pinned_model_config(model_name: str, version: int) -> str:
    """A TF Serving ``ModelServerConfig`` serving exactly ``version`` of the repository KServe
    mounts at :data:`KSERVE_MODEL_DIR`."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add(name=model_name, base_path=KSERVE_MODEL_DIR,
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.append(int(version))
    return text_format.MessageToString(config)


def render_model_config_map(cfg: Config, version: int) -> dict[str, Any]:
    """The ConfigMap the revision of ``version`` mounts (:func:`pinned_model_config`)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(cfg, version), "namespace": cfg.export.kserve.namespace,
                     "labels": _labels(cfg, version)},
        "data": {CONFIG_FILE: pinned_model_config(cfg.serving.model_name, version)},
    }


def _labels(cfg: Config, version: int) -> dict[str, str]:
    return {"app.kubernetes.io/name": _resource_name(cfg), **PART_OF, "app.kubernetes.io/version": str(int(version))}


def _annotations(version: int, metadata: Mapping[str, Any], stable: int | None) -> dict[str, str]:
    """What an operator reads off ``kubectl get isvc -o yaml``: the version and label it serves,
    the signature KServe's v1 ``:predict`` calls, the lead days of its output, and which trained
    model it is (network, weights hash, training fingerprint when the metadata has them)."""
    found = {
        "version": str(int(version)),
        "label": "canary" if stable is not None else "stable",
        "stable-version": str(int(stable)) if stable is not None else None,
        "signature": SIGNATURE,
        "leads": ",".join(str(int(k)) for k in metadata.get(LEADS) or []) or None,
        "network": metadata.get("model"),
        "model-sha256": (metadata.get("fingerprint") or {}).get("model_sha256"),
        "training-fingerprint": (metadata.get("training_record") or {}).get("fingerprint"),
    }
    return {ANNOTATION + k: str(v) for k, v in found.items() if v is not None}


def render_inference_service(cfg: Config, version: int, metadata: Mapping[str, Any],
                             stable: int | None = None) -> dict[str, Any]:
    """The InferenceService serving ``version`` (its bundle ``metadata``) on KServe's TF
    Serving runtime. ``stable``: the champion when ``version`` is a canary beside it; the
    revision then takes ``export.kserve.canary_traffic_percent`` of the requests."""
    kserve = cfg.export.kserve
    if stable is not None and int(stable) == int(version):
        raise ValueError(f"version {version} cannot be a canary beside itself as stable")
    model = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtimeVersion": kserve.runtime_version,
        "storageUri": kserve.storage_uri,
        "args": [f"--model_config_file={CONFIG_DIR}/{CONFIG_FILE}"],
        "resources": {"requests": {"cpu": kserve.cpu_request, "memory": kserve.memory_request},
                      "limits": {"memory": kserve.memory_limit}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": NON_ROOT_UID, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True}],
    }
    predictor: dict[str, Any] = {} if stable is None else {"canaryTrafficPercent": kserve.canary_traffic_percent}
    predictor.update(model=model, volumes=[{"name": CONFIG_VOLUME,
                                            "configMap": {"name": config_map_name(cfg, version)}}])
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": _resource_name(cfg), "namespace": kserve.namespace, "labels": _labels(cfg, version),
                     "annotations": _annotations(version, metadata, stable)},
        "spec": {"predictor": predictor},
    }


def render_for_labels(cfg: Config, models_dir: Path, labels: Mapping[str, int]) -> list[dict[str, Any]]:
    """The documents to apply for the repository's ``labels``: the canary's revision (with its
    traffic share) when it differs from stable, else stable's; empty when nothing is labelled."""
    from soilcast.layout import bundle
    from soilcast.repository.versions import read_metadata

    stable, canary = labels.get("stable"), labels.get("canary")
    version = canary if canary is not None else stable
    if version is None:
        return []
    root = bundle(Path(models_dir), version).root
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the labels {dict(labels)} point at version {version}, which is not "
                                "published (fix models.config with `soilcast promote`)")
    beside = stable if stable is not None and stable != version else None
    return [render_model_config_map(cfg, version),
            render_inference_service(cfg, version, read_metadata(root), beside)]


def write_inference_service(cfg: Config, models_dir: Path, path: Path) -> Path:
    """Render the repository's labelled versions into ``path`` (atomically): a multi-document
    YAML for ``kubectl apply -f``; with nothing published, a file holding only a comment
    saying so (the path always exists: it is an output of the export step)."""
    from soilcast.io.atomic import atomic_write_text
    from soilcast.repository.versions import current_labels

    labels = current_labels(Path(models_dir)) if Path(models_dir).is_dir() else {}
    docs = render_for_labels(cfg, Path(models_dir), labels)
    named = ", ".join(f"{k} {v}" for k, v in sorted(labels.items())) or "none"
    head = (f"# KServe deployment of {cfg.serving.model_name} (labels: {named}), written by the export step;\n"
            "# kubectl apply -f this file (serving/k8s/README.md)\n")
    if not docs:
        head += f"# nothing to deploy: no version of {models_dir} is published yet\n"
    body = yaml.dump_all(docs, Dumper=_BlockDumper, sort_keys=False) if docs else ""
    atomic_write_text(Path(path), head + body)
    return Path(path)


class _BlockDumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (the pinned model config) as ``|`` blocks, readable
    in review and in ``kubectl get configmap -o yaml``."""


def _block_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


_BlockDumper.add_representer(str, _block_str)
