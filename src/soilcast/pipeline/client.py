"""Submit and schedule the compiled pipeline on a Kubeflow Pipelines cluster (kfp.Client).

``submit`` starts one run from the compiled package. ``schedule`` uploads the package as a
version of its pipeline (``soilcast`` for training, ``soilcast-daily`` for the daily
operation; the version is named by the package's content hash, so re-scheduling the same
package reuses it), creates the experiment if needed and adds a cron recurring run that
never overlaps itself (``max_concurrency=1``) and does not backfill missed slots.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CRON_FIELDS = 6  # KFP's scheduler (robfig/cron) takes seconds first: "s m h dom mon dow"


class ScheduleError(ValueError):
    """A schedule request that cannot be sent (bad cron, missing package)."""


def check_cron(expression: str) -> str:
    """Require KFP's six-field cron (seconds first): five-field crontab lines fire wrongly."""
    fields = expression.split()
    if len(fields) != CRON_FIELDS:
        raise ScheduleError(
            f"cron {expression!r}: KFP needs {CRON_FIELDS} fields 'sec min hour dom month dow' "
            f"(e.g. '0 0 3 * * 1' = Mondays 03:00), got {len(fields)}"
        )
    return " ".join(fields)


def _package(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ScheduleError(f"{path}: compiled pipeline not found (run `soilcast pipeline compile`)")
    return path


def make_client(host: str, namespace: str | None = None) -> Any:
    import kfp

    return kfp.Client(host=host, namespace=namespace or "kubeflow")


def _name_filter(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def package_version_name(pipeline_name: str, package: Path) -> str:
    return f"{pipeline_name}-{hashlib.sha256(package.read_bytes()).hexdigest()[:12]}"


def ensure_pipeline_version(client: Any, package: Path, pipeline_name: str) -> tuple[str, str]:
    """(pipeline_id, version_id) of ``package`` on the server, uploading what is missing."""
    version_name = package_version_name(pipeline_name, package)
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(
            str(package), pipeline_name=pipeline_name,
            description="soilcast: daily soil-moisture forecasting",
        ).pipeline_id
    listed = client.list_pipeline_versions(pipeline_id, filter=_name_filter(version_name))
    for version in listed.pipeline_versions or []:
        if version.display_name == version_name:
            return pipeline_id, version.pipeline_version_id
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


@dataclass(frozen=True)
class Submitted:
    experiment: str
    run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scheduled:
    experiment_id: str
    pipeline_id: str
    version_id: str
    recurring_run_id: str
    cron: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def submit(
    host: str,
    package: str | Path,
    experiment: str,
    arguments: dict[str, Any] | None = None,
    run_name: str | None = None,
    namespace: str | None = None,
    enable_caching: bool | None = None,
) -> Submitted:
    """Start one run of the compiled pipeline in ``experiment`` (created if missing)."""
    package = _package(package)
    client = make_client(host, namespace)
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=arguments or {},
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
        enable_caching=enable_caching,
    )
    return Submitted(experiment=experiment, run_id=result.run_id)


def schedule(
    host: str,
    package: str | Path,
    cron: str,
    experiment: str,
    job_name: str,
    pipeline_name: str,
    arguments: dict[str, Any] | None = None,
    namespace: str | None = None,
    max_concurrency: int = 1,
) -> Scheduled:
    """Create a cron recurring run of the package's pipeline version in ``experiment``."""
    cron = check_cron(cron)
    package = _package(package)
    client = make_client(host, namespace)
    experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
    pipeline_id, version_id = ensure_pipeline_version(client, package, pipeline_name)
    recurring = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=job_name,
        cron_expression=cron,
        max_concurrency=max_concurrency,
        no_catchup=True,
        params=arguments or {},
        pipeline_id=pipeline_id,
        version_id=version_id,
    )
    return Scheduled(
        experiment_id=experiment_id,
        pipeline_id=pipeline_id,
        version_id=version_id,
        recurring_run_id=recurring.recurring_run_id,
        cron=cron,
    )
