"""The soilcast daily pipeline: the operation a scheduler runs every morning (issue 22).

daily -> promote-auto

``daily`` ingests the delivery folder, verifies the archived forecasts whose valid day is now
observed, forecasts the latest day with each ``operations.labels`` version through the
gateway, archives and writes the products (``soilcast daily``); ``promote-auto`` then
promotes the canary to stable when its realised skill earns it (``soilcast promote --auto``).

Promotion runs only when the daily step succeeded (KFP's default for ``.after``): it judges
the canary on the verification the daily step has just brought up to date, and a failed day
(a refused delivery, revised observations, the gateway down, another writer holding the
lock) leaves that record stale or half-revised. Tomorrow's run judges again.

Both steps act on persistent, shared state (tensor store, forecast archive, model
repository), not on KFP artifacts: ``workdir`` is the project tree (params.yaml, data/,
artifacts/, models/) on a volume mounted into both pods, ``params`` a params file relative to
it, ``server`` the gateway Service (host:port, gRPC), ``delivery`` the folder of new raw
files (relative to ``workdir``; empty = none), ``weather`` a forecast-weather file for the
lead days (empty = none). kfp-kubernetes is not in requirements.lock, so the compiled file
carries no volume spec: mount the PVCs named in :data:`VOLUMES` at those paths (see
docs/kubeflow.md, "The daily pipeline"). Neither step is ever taken from the cache.

Compile with ``soilcast pipeline compile`` (writes pipelines/soilcast_daily.yaml too);
schedule with ``soilcast pipeline schedule --pipeline daily --cron '0 30 6 * * *'``.
"""

# No `from __future__ import annotations`: KFP reads the annotations as real types.
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the components package lives at the repository root
    sys.path.insert(0, str(REPO))

from components.operations import daily, promote_auto  # noqa: E402
from kfp import dsl  # noqa: E402

from soilcast.config import config_from_dict, read_params  # noqa: E402

PIPELINE_NAME = "soilcast-daily"
WORKDIR = "/mnt/soilcast"
# (PVC, mount path): the project tree, and the served model repository (paths.models_dir)
# that TF Serving and the gateway mount read-only (serving/k8s/models-pvc.yaml).
VOLUMES = (("soilcast-data", WORKDIR), ("soilcast-models", f"{WORKDIR}/models/soilcast"))
# The pipeline's parameters and their defaults; the server is the gateway Service of
# serving/k8s/gateway.yaml (namespace soilcast, gRPC port), which serves TLS only: tls_ca is the
# CA of its certificate (the Secret gateway-tls), copied onto the volume (docs/kubeflow.md).
DEFAULTS = {"workdir": WORKDIR, "params": "params.yaml", "server": "gateway.soilcast:8500",
            "delivery": "data/incoming", "weather": "", "tls_ca": "certs/gateway-ca.pem"}


def pipeline_arguments(raw: Dict[str, Any]) -> Dict[str, Any]:
    """The pipeline's parameters and their defaults (``raw`` is checked, not embedded: the
    steps read the params file on the volume, the one the host's ``soilcast daily`` reads)."""
    config_from_dict(raw)
    return dict(DEFAULTS)


def make_components(image: str) -> SimpleNamespace:
    """The two steps as lightweight components on ``image`` (which carries soilcast and kfp)."""
    return SimpleNamespace(**{fn.__name__: dsl.component(fn, base_image=image, install_kfp_package=False)
                              for fn in (daily, promote_auto)})


def build_pipeline(raw: Dict[str, Any]) -> Callable:
    """The daily pipeline on params.yaml's ``pipeline.image``."""
    c = make_components(config_from_dict(raw).pipeline.image)

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Daily: ingest, verify, forecast with each label, archive; then promote the canary on its realised skill.")
    def soilcast_daily(workdir: str = DEFAULTS["workdir"], params: str = DEFAULTS["params"],
                       server: str = DEFAULTS["server"], delivery: str = DEFAULTS["delivery"],
                       weather: str = DEFAULTS["weather"], tls_ca: str = DEFAULTS["tls_ca"]) -> str:
        day = (c.daily(workdir=workdir, params=params, server=server, delivery=delivery, weather=weather,
                       tls_ca=tls_ca)
               .set_display_name("daily").set_caching_options(False))
        decision = (c.promote_auto(workdir=workdir, params=params)
                    .after(day)  # only when the day succeeded
                    .set_display_name("promote-auto").set_caching_options(False))
        return decision.output

    return soilcast_daily


# Module-level pipeline for kfp tooling (``kfp dsl compile --py``): params.yaml's image.
soilcast_daily = build_pipeline(read_params(REPO / "params.yaml"))
