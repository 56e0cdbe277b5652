"""Check rendered Kubernetes manifests against the KServe SDK's model classes, out of process.

Run with the clients' interpreter (``.venv-clients``: the ``kserve`` SDK pins packages the
project cannot share)::

    .venv-clients/bin/python src/soilcast/testing/kserve_check.py <manifest.yaml>

Every document is built into its SDK class (``InferenceService`` -> ``V1beta1InferenceService``
from ``kserve.models``, ``ConfigMap`` -> the Kubernetes client's ``V1ConfigMap``; nested types
resolved from ``kserve.models`` first, then ``kubernetes.client.models``, as the generated
types name them) through the classes' own constructors (their client-side validation runs).
Why not only ``kserve.ApiClient``'s deserialiser: it silently drops keys the model does not
know (a misspelt ``canaryTraficPercent`` would vanish) and cannot resolve the Kubernetes types
it nests (``V1ObjectMeta``); here an unknown key or a wrong type is an error naming its path,
and the built object, serialised back with ``ApiClient.sanitize_for_serialization``, must
equal the document (the round trip keeps every field; the generated constructors' defaults for
fields the document leaves out, such as ``V1beta1ModelSpec.name = ''``, are not counted).

Prints one JSON line (``{"ok": true, "documents": [...]}``); exit 1 with the problems otherwise.
Nothing of soilcast is imported: this file runs in the clients' environment.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

CLASSES = {"InferenceService": "V1beta1InferenceService", "ConfigMap": "V1ConfigMap"}
# what YAML gives for each generated scalar type (a quantity and a timestamp are strings in a manifest)
PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "ResourceQuantity": str, "datetime": str}


class ManifestError(ValueError):
    """A document the SDK classes do not accept as written; says where."""


def resolve(name: str) -> type:
    """An SDK model class by its generated name (KServe's, else the Kubernetes client's)."""
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise ManifestError(f"no SDK class named {name}")


def build(data: Any, kind: str, path: str) -> Any:
    """``data`` as the SDK type ``kind`` (a generated type string: ``list[V1EnvVar]``,
    ``Dict[str, str]``, ``dict(str, str)``, ``int``, ``V1beta1ModelSpec`` ...), strictly."""
    if (m := re.fullmatch(r"[lL]ist\[(.*)\]", kind)):
        if not isinstance(data, list):
            raise ManifestError(f"{path}: expected a list ({kind}), found {type(data).__name__}")
        return [build(v, m.group(1), f"{path}[{i}]") for i, v in enumerate(data)]
    if (m := re.fullmatch(r"dict\(([^,]*), (.*)\)|Dict\[([^,]*), (.*)\]", kind)):
        value = m.group(2) or m.group(4)
        if not isinstance(data, dict):
            raise ManifestError(f"{path}: expected a mapping ({kind}), found {type(data).__name__}")
        return {k: build(v, value, f"{path}.{k}") for k, v in data.items()}
    if kind == "object":
        return data
    if kind in PRIMITIVES:
        if isinstance(data, bool) != (kind == "bool") or not isinstance(data, PRIMITIVES[kind]):
            raise ManifestError(f"{path}: expected {kind}, found {type(data).__name__} {data!r}")
        return data
    return build_model(data, resolve(kind), path)


def build_model(data: Any, klass: type, path: str) -> Any:
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a {klass.__name__} mapping, found {type(data).__name__}")
    by_key = {key: attr for attr, key in klass.attribute_map.items()}
    unknown = sorted(set(data) - set(by_key))
    if unknown:
        raise ManifestError(f"{path}: {klass.__name__} has no field {unknown} (known: {sorted(by_key)})")
    kwargs = {by_key[k]: build(v, klass.openapi_types[by_key[k]], f"{path}.{k}") for k, v in data.items()}
    try:
        obj = klass(**kwargs)
    except ValueError as err:  # the generated classes' client-side validation
        raise ManifestError(f"{path}: {klass.__name__} refuses it: {err}") from None
    return without_defaults(obj, set(kwargs), path)


def without_defaults(obj: Any, given: set[str], path: str) -> Any:
    """``obj`` with the values its generated constructor fills in for fields the document
    leaves out (``V1beta1ModelSpec.name = ''``) cleared, so the round trip compares exactly the
    document; any other value the SDK adds is an error."""
    import inspect

    params = inspect.signature(type(obj).__init__).parameters
    for attr in set(type(obj).openapi_types) - given:
        value = getattr(obj, attr)
        if value is None:
            continue
        if attr not in params or value != params[attr].default:
            raise ManifestError(f"{path}: the SDK set {attr}={value!r}, which the document does not hold")
        setattr(obj, f"_{attr}", None)  # the generated classes keep each field in _<name>
    return obj


def check_document(doc: Any, index: int) -> dict[str, Any]:
    """One manifest document built, serialised back and compared; a summary of it."""
    from kserve import ApiClient

    where = f"document {index}"
    if not isinstance(doc, dict) or doc.get("kind") not in CLASSES:
        raise ManifestError(f"{where}: kind {doc.get('kind') if isinstance(doc, dict) else doc!r} "
                            f"is not one of {sorted(CLASSES)}")
    obj = build_model(doc, resolve(CLASSES[doc["kind"]]), f"{where} ({doc['kind']})")
    back = ApiClient().sanitize_for_serialization(obj)
    if back != doc:
        raise ManifestError(f"{where}: the SDK round trip changed it:\n{json.dumps(back, sort_keys=True)}\n"
                            f"!=\n{json.dumps(doc, sort_keys=True)}")
    return {"kind": doc["kind"], "class": type(obj).__name__, "name": obj.metadata.name}


def main(argv: list[str]) -> int:
    import yaml

    if len(argv) != 1:
        print("usage: kserve_check.py <manifest.yaml>", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    try:
        if not docs:
            raise ManifestError(f"{argv[0]}: no documents")
        report = [check_document(doc, i) for i, doc in enumerate(docs)]
    except ManifestError as err:
        print(f"{argv[0]}: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"ok": True, "documents": report}))
    return 0


if __name__ == "__main__":  # pragma: no cover - run in the clients' environment
    sys.exit(main(sys.argv[1:]))
