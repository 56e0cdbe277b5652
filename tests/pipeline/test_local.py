"""Kubeflow pipelines: compiled IR (fresh, GPU training, gated export; the daily pipeline's
daily -> promote-auto), cluster client calls against a local stub of the KFP API, and the
pipelines run locally end to end."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from typer.testing import CliRunner

from soilcast.cli import app
from soilcast.config import load_config
from soilcast.pipeline import build, client
from tests.conftest import PARAMS, REPO

COMPILED = REPO / "pipelines" / "soilcast_pipeline.yaml"


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    build.compile_pipeline(PARAMS, out)
    docs = list(yaml.safe_load_all(out.read_text()))
    return {"spec": docs[0], "bytes": out.read_bytes()}


def _dags(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every DAG in the IR (root and sub-DAGs) by component name."""
    dags = {"root": spec["root"]["dag"]}
    for name, comp in spec["components"].items():
        if "dag" in comp:
            dags[name] = comp["dag"]
    return dags


def _tasks_of(spec: dict[str, Any], component: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(dag, task name, task) for every task that runs ``component`` (e.g. comp-train)."""
    return [
        (dag_name, task_name, task)
        for dag_name, dag in _dags(spec).items()
        for task_name, task in dag["tasks"].items()
        if task["componentRef"]["name"] == component
    ]


def _parent_task(spec: dict[str, Any], dag_component: str) -> tuple[str, dict[str, Any]]:
    for dag_name, dag in _dags(spec).items():
        for task in dag["tasks"].values():
            if task["componentRef"]["name"] == dag_component:
                return dag_name, task
    raise AssertionError(f"no task runs {dag_component}")


def test_committed_pipeline_yaml_is_fresh(ir):
    """The committed IR must be what compiling params.yaml gives now (byte for byte)."""
    assert COMPILED.is_file(), "run `soilcast pipeline compile`"
    assert COMPILED.read_bytes() == ir["bytes"], (
        "pipelines/soilcast_pipeline.yaml is stale: run `soilcast pipeline compile`"
    )


def test_compilation_is_deterministic(tmp_path, ir):
    again = build.compile_pipeline(PARAMS, tmp_path / "again.yaml")
    assert again.read_bytes() == ir["bytes"]


def test_every_training_task_requests_one_gpu_and_params_resources(ir):
    spec = ir["spec"]
    cfg = load_config(PARAMS)
    trains = _tasks_of(spec, "comp-train")
    assert trains, "no training task in the IR"
    for dag_name, _, task in trains:
        executor = spec["components"]["comp-train"]["executorLabel"]
        resources = spec["deploymentSpec"]["executors"][executor]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert int(resources["accelerator"]["resourceCount"]) == 1
        assert resources["resourceCpuRequest"] == cfg.pipeline.cpu_request
        assert resources["resourceMemoryRequest"] == cfg.pipeline.memory_request
        # fanned out over the `models` pipeline parameter: one task per network
        _, loop = _parent_task(spec, dag_name)
        assert "pipelinechannel--models" in json.dumps(loop["parameterIterator"])
    assert spec["root"]["inputDefinitions"]["parameters"]["models"]["defaultValue"] == list(
        cfg.training.models
    )


def test_export_runs_only_under_the_gate_blessing(ir):
    spec = ir["spec"]
    (dag_name, _, _), = _tasks_of(spec, "comp-export")
    publish_dag, condition_task = _parent_task(spec, dag_name)
    condition = condition_task["triggerPolicy"]["condition"]
    assert re.fullmatch(r"inputs\.parameter_values\['pipelinechannel--blessed'\] == true", condition)
    # ... and the sub-DAG's `blessed` input is the gate's `blessed` output
    _, publish_task = _parent_task(spec, publish_dag)
    blessed = publish_task["inputs"]["parameters"]["blessed"]["taskOutputParameter"]
    assert blessed == {"outputParameterKey": "blessed", "producerTask": "gate"}
    # gate and export read external state (the served champion): never from the cache
    for comp in ("comp-gate", "comp-export"):
        for _, _, task in _tasks_of(spec, comp):
            assert "enableCache" not in task["cachingOptions"], comp  # absent = off


def test_image_comes_from_params_pipeline_image(ir, tmp_path):
    spec = ir["spec"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {load_config(PARAMS).pipeline.image}
    raw = yaml.safe_load(PARAMS.read_text())
    raw["pipeline"]["image"] = "registry.example/soilcast:test"
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(raw))
    out = build.compile_pipeline(other, tmp_path / "p.yaml")
    assert "registry.example/soilcast:test" in out.read_text()
    assert "soilcast/soilcast:0.1.0" not in out.read_text()


def test_dag_mirrors_dvc_stages(ir):
    """Every dvc.yaml stage has its component, wired in the same order."""
    spec = ir["spec"]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    comps = {name.removeprefix("comp-") for name in spec["components"]}
    assert set(stages) <= comps
    root = spec["root"]["dag"]["tasks"]
    assert set(root["regrid"]["dependentTasks"]) >= {"validate", "ingest"}
    assert set(root["stack"]["dependentTasks"]) >= {"regrid", "clip"}
    assert set(root["train-networks"]["dependentTasks"]) >= {"stack", "configure"}
    assert set(root["evaluate"]["dependentTasks"]) >= {"stack", "train-networks"}
    assert "evaluate" in root["gate"]["dependentTasks"]


def test_compile_check_cli_flags_a_stale_file(tmp_path):
    stale = tmp_path / "stale.yaml"
    stale.write_text("# not the pipeline\n")
    result = CliRunner().invoke(
        app, ["pipeline", "compile", "--params", str(PARAMS), "--out", str(stale), "--check"]
    )
    assert result.exit_code == 1
    assert "stale" in result.output


def test_cron_must_have_six_fields():
    assert client.check_cron("0 0 3 * * 1") == "0 0 3 * * 1"
    with pytest.raises(client.ScheduleError, match="6 fields"):
        client.check_cron("0 3 * * 1")


# --------------------------------------------------------------------------------------
# A stub of the KFP v2beta1 REST API on 127.0.0.1: records each request, answers what
# kfp.Client needs. No cluster is reachable here, so this checks the calls we make.


class _KfpStub(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def _answer(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        entry = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                 "raw": raw}
        if self.headers.get("Content-Type", "").startswith("application/json") and raw:
            entry["json"] = json.loads(raw)
        self.requests.append(entry)
        return entry

    def do_GET(self) -> None:
        entry = self._record()
        if entry["path"].endswith("/healthz"):
            self._answer({"multi_user": False})
        else:  # experiments, pipelines, pipeline versions: nothing exists yet
            self._answer({})

    def do_POST(self) -> None:
        entry = self._record()
        path = entry["path"]
        answers = {
            "/apis/v2beta1/experiments": {"experiment_id": "exp-1", "display_name": "soilcast"},
            "/apis/v2beta1/pipelines/upload": {"pipeline_id": "pl-1", "display_name": "soilcast"},
            "/apis/v2beta1/pipelines/upload_version": {
                "pipeline_id": "pl-1", "pipeline_version_id": "ver-1"},
            "/apis/v2beta1/runs": {"run_id": "run-1"},
            "/apis/v2beta1/recurringruns": {"recurring_run_id": "rr-1"},
        }
        self._answer(answers.get(path, {}))


@pytest.fixture
def kfp_stub():
    handler = type("Handler", (_KfpStub,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests
    finally:
        server.shutdown()
        server.server_close()


def _posts(requests: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    return [r for r in requests if r["method"] == "POST" and r["path"] == path]


def test_schedule_creates_experiment_uploads_and_adds_a_cron_run(kfp_stub):
    """Against the local KFP API stub (no cluster here): the CLI creates the experiment,
    uploads the package as a content-named version and schedules a six-field cron run that
    never overlaps itself."""
    host, requests = kfp_stub
    result = CliRunner().invoke(app, [
        "pipeline", "schedule", "--host", host, "--cron", "0 0 3 * * 1",
        "--params", str(PARAMS), "--package", str(COMPILED), "--arg", "epochs=3",
    ])
    assert result.exit_code == 0, result.output
    assert "rr-1" in result.output
    (experiment,) = _posts(requests, "/apis/v2beta1/experiments")
    assert experiment["json"]["display_name"] == load_config(PARAMS).pipeline.experiment
    (upload,) = _posts(requests, "/apis/v2beta1/pipelines/upload")
    assert upload["query"]["name"] == ["soilcast"]
    assert b"PIPELINE DEFINITION" in upload["raw"]
    (version,) = _posts(requests, "/apis/v2beta1/pipelines/upload_version")
    assert version["query"]["pipelineid"] == ["pl-1"]
    assert version["query"]["name"] == [client.package_version_name("soilcast", COMPILED)]
    (recurring,) = _posts(requests, "/apis/v2beta1/recurringruns")
    body = recurring["json"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_version_reference"] == {"pipeline_id": "pl-1",
                                                  "pipeline_version_id": "ver-1"}
    assert body["runtime_config"]["parameters"] == {"epochs": 3}
    assert body["mode"] == "ENABLE"


def test_schedule_refuses_a_five_field_cron_before_calling_the_server(kfp_stub):
    host, requests = kfp_stub
    result = CliRunner().invoke(app, [
        "pipeline", "schedule", "--host", host, "--cron", "0 3 * * 1", "--params", str(PARAMS),
    ])
    assert result.exit_code == 1
    assert "6 fields" in result.output
    assert requests == []


def test_submit_starts_one_run_of_the_compiled_package(kfp_stub):
    """Against the local KFP API stub: submit posts the compiled spec with our arguments."""
    host, requests = kfp_stub
    result = CliRunner().invoke(app, [
        "pipeline", "submit", "--host", host, "--params", str(PARAMS),
        "--package", str(COMPILED), "--run-name", "smoke",
        "--arg", "min_skill_vs_best_reference=0.1",
    ])
    assert result.exit_code == 0, result.output
    assert "run-1" in result.output
    (run,) = _posts(requests, "/apis/v2beta1/runs")
    body = run["json"]
    assert body["display_name"] == "smoke"
    assert body["experiment_id"] == "exp-1"
    assert body["pipeline_spec"]["pipelineInfo"]["name"] == "soilcast"
    assert body["runtime_config"]["parameters"] == {"min_skill_vs_best_reference": 0.1}


def test_data_and_training_steps_are_cached(ir):
    spec = ir["spec"]
    for comp in ("comp-configure", "comp-ingest", "comp-validate", "comp-regrid", "comp-clip",
                 "comp-stack", "comp-train", "comp-evaluate"):
        tasks = _tasks_of(spec, comp)
        assert tasks, comp
        for _, _, task in tasks:
            assert task["cachingOptions"].get("enableCache") is True, comp


def test_dockerfile_installs_the_lock_as_non_root():
    """No Docker engine here: check the recipe instead of building it (CI builds it)."""
    text = (REPO / "Dockerfile").read_text()
    assert "COPY requirements.lock" in text
    assert "pip install -r requirements.lock" in text
    assert "tensorflow[and-cuda]" in text  # GPU-capable TensorFlow at the locked version
    assert "pip install --no-deps ." in text
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1] not in {"root", "0"}


def test_ci_runs_tests_checks_compiled_pipeline_and_builds_image():
    ci = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text())
    steps = {name: json.dumps(job["steps"]) for name, job in ci["jobs"].items()}
    assert any("make test" in s for s in steps.values())
    assert any("soilcast pipeline compile" in s and "git diff --exit-code" in s
               for s in steps.values())
    assert any("docker/build-push-action" in s and '"push": false' in s for s in steps.values())


# --------------------------------------------------------------------------------------
# End to end: the whole pipeline through kfp's local SubprocessRunner on generated data.

E2E_MODELS = ["fc", "lstm"]  # two networks keep the fan-out real and the test short


def _canary(version_dir: Path, tensors_store: Path) -> None:
    """Load the exported SavedModel fresh and answer a request built from real test days."""
    import numpy as np
    import tensorflow as tf

    from soilcast.data.store import open_tensors

    meta = json.loads((version_dir / "assets.extra" / "soilcast_metadata.json").read_text())
    t = open_tensors(tensors_store)
    L = meta["seq_len"]
    meteo = np.nan_to_num(t.X[-L:], nan=0.0)[None].astype("float32")  # [1, L, H, W, 7]
    inputs = {"meteo": tf.constant(meteo)}
    if meta["antecedent_soil_moisture"]:  # a model trained with past soil moisture takes it too
        past = np.nan_to_num(t.Y[-L:, ..., 0], nan=0.0)[None].astype("float32")
        inputs["antecedent_soil_moisture"] = tf.constant(past)
    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    out = served(**inputs)["soil_moisture"].numpy()
    assert out.shape == (1, *t.mask.shape)
    assert np.isfinite(out[0][t.mask]).all()
    assert np.isnan(out[0][~t.mask]).all()
    lo, hi = load_config(PARAMS).target.valid_range
    assert ((out[0][t.mask] >= lo) & (out[0][t.mask] <= hi)).all()


@pytest.mark.slow
def test_run_local_exports_a_servable_model_and_a_stricter_gate_exports_nothing(tmp_path):
    from soilcast.pipeline.local import run_local, tiny_overrides

    overrides = tiny_overrides()
    models = {"models": E2E_MODELS}
    first = run_local(PARAMS, tmp_path, overrides=overrides, arguments=models)
    assert first.blessed
    assert first.version_dir is not None and first.version_dir.name == "1"
    (run_dir,) = [p for p in first.pipeline_root.iterdir() if p.is_dir()]
    store = run_dir / "stack" / "tensors" / "tensors.zarr"
    _canary(first.version_dir, store)
    meta = json.loads((first.version_dir / "assets.extra/soilcast_metadata.json").read_text())
    blessing = json.loads((run_dir / "gate" / "blessing").read_text())
    # the winner is a network, scored without or with the forecast archive's runs (the
    # forecasts step runs because params.yaml configures sources.forecast)
    assert meta["model"] == blessing["network"] in E2E_MODELS
    assert blessing["winner"] in (meta["model"], f"{meta['model']}+forecast")
    assert (run_dir / "forecasts" / "forecasts").is_dir()
    # the export's Model artifact carries the same version for lineage
    assert (run_dir / "export" / "model" / "soilcast" / "1" / "saved_model.pb").is_file()

    # A deliberately worse candidate: no network reaches skill 10 over the best reference at every lead.
    strict = {**models, "min_skill_vs_best_reference": 10.0}
    second = run_local(PARAMS, tmp_path, overrides=overrides, arguments=strict)
    assert not second.blessed and second.version_dir is None
    assert sorted(p.name for p in first.serving_models_dir.iterdir()
                  if p.name.isdigit()) == ["1"]  # nothing new exported
    (new_run,) = [p for p in second.pipeline_root.iterdir() if p.is_dir() and p != run_dir]
    ran = {p.name for p in new_run.iterdir()}
    assert "gate" in ran and "export" not in ran
    # data preparation, training and evaluation came from the cache
    assert not ran & {"ingest", "validate", "regrid", "clip", "stack", "forecasts", "evaluate"}
    assert not any(name.startswith("for-loop") for name in ran)


# --------------------------------------------------------------------------------------
# Runtime helpers the components use: the step's config, the basins in the raw artifact.


def _params_text(tmp_path: Path) -> str:
    from soilcast.pipeline.build import load_raw
    from soilcast.pipeline.runtime import dump_params

    return dump_params(load_raw(PARAMS))


def test_step_config_applies_step_overrides_and_finds_basins_in_the_raw_artifact(tmp_path):
    from soilcast.config import ConfigError
    from soilcast.pipeline import runtime

    text = _params_text(tmp_path)
    cfg = runtime.step_config(text, overrides={"gate": {"min_skill_vs_best_reference": 0.5}})
    assert cfg.gate.min_skill_vs_best_reference == 0.5
    assert runtime.basins_in(cfg, tmp_path / "raw") == tmp_path / "raw" / "basins" / "demo_regions.geojson"
    outside = runtime.step_config(text, overrides={"basins": {"path": "/elsewhere/b.geojson"}})
    with pytest.raises(ConfigError, match="must lie under paths.raw_dir"):
        runtime.basins_in(outside, tmp_path / "raw")


def test_resolved_params_are_validated_and_stable(tmp_path):
    from soilcast.config import ConfigError
    from soilcast.pipeline import runtime

    text = _params_text(tmp_path)
    once = runtime.resolve_params(text, {"training": {"epochs": 1}})
    assert runtime.resolve_params(once, {}) == once  # same mapping, same bytes
    assert "\n" not in once  # one line: safe inside kfp's comment header
    with pytest.raises(ConfigError, match="training.epochs"):
        runtime.resolve_params(text, {"training": {"epochs": 0}})
    # the networks' sections too (second phase, against the registry), before any data
    with pytest.raises(ConfigError, match="models.gru.units: Input should be greater than or equal to 1"):
        runtime.resolve_params(text, {"models": {"gru": {"units": 0}}})
    with pytest.raises(ConfigError, match="training.models: unknown network 'foo'"):
        runtime.resolve_params(text, {"training": {"models": ["foo"]}})


def test_ingest_copies_a_raw_folder_and_hashes_it(tmp_path):
    from soilcast.pipeline import runtime

    src = tmp_path / "src"
    (src / "era5").mkdir(parents=True)
    (src / "era5" / "tp_2010.nc").write_bytes(b"abc")
    (src / "basins").mkdir()
    (src / "basins" / "demo_regions.geojson").write_text("{}")
    meta = runtime.ingest(_params_text(tmp_path), str(src), str(tmp_path / "out"))
    assert (tmp_path / "out" / "era5" / "tp_2010.nc").read_bytes() == b"abc"
    assert meta["n_files"] == 2 and meta["sha256"] == runtime.tree_hash(src)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        runtime.ingest(_params_text(tmp_path), str(tmp_path / "missing"), str(tmp_path / "o2"))


def test_run_of_names_a_model_artifact_from_its_record(tmp_path):
    from soilcast.layout import RunDir
    from soilcast.pipeline import runtime
    from tests.test_records import train_record

    run = RunDir(tmp_path / "model")
    run.root.mkdir()
    run.record.write_text(json.dumps({**train_record(), "model": "lstm"}))
    assert runtime.run_of(run.root) == ("lstm", run)
    with pytest.raises(FileNotFoundError, match="not a training run"):
        runtime.run_of(tmp_path)


def test_unknown_or_mistyped_arguments_fail_before_calling_the_server(kfp_stub):
    host, requests = kfp_stub
    for bad, why in (("nope=1", "unknown pipeline parameter"), ("epochs=abc", "expected int")):
        result = CliRunner().invoke(app, [
            "pipeline", "submit", "--host", host, "--params", str(PARAMS),
            "--package", str(COMPILED), "--arg", bad,
        ])
        assert result.exit_code == 1 and why in result.output
    assert requests == []


# --------------------------------------------------------------------------------------
# The daily pipeline (pipelines/soilcast_daily.py): daily -> promote-auto on a mounted volume.

DAILY = REPO / "pipelines" / "soilcast_daily.yaml"
RECURRING = REPO / "deploy" / "kubeflow" / "soilcast-daily-recurring.yaml"


@pytest.fixture(scope="module")
def daily_ir(tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("daily") / "daily.yaml"
    build.compile_pipeline(PARAMS, out, "daily")
    return {"spec": yaml.safe_load(out.read_text()), "bytes": out.read_bytes()}


def test_committed_daily_pipeline_yaml_is_fresh(daily_ir):
    assert DAILY.is_file(), "run `soilcast pipeline compile`"
    assert DAILY.read_bytes() == daily_ir["bytes"], (
        "pipelines/soilcast_daily.yaml is stale: run `soilcast pipeline compile`"
    )


def test_daily_dag_is_daily_then_promote_on_plain_parameters_never_cached(daily_ir):
    spec = daily_ir["spec"]
    assert spec["pipelineInfo"]["name"] == "soilcast-daily"
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"daily", "promote-auto"}
    assert "dependentTasks" not in tasks["daily"]
    assert tasks["promote-auto"]["dependentTasks"] == ["daily"]
    # no trigger policy: promote runs only when daily succeeded (KFP's default for .after)
    assert "triggerPolicy" not in tasks["promote-auto"]
    for task in tasks.values():  # both act on the volume's state: never from the cache
        assert "enableCache" not in task["cachingOptions"]
    # state lives on the mounted volume, not in KFP artifacts: plain strings only
    assert not any("artifacts" in c.get("inputDefinitions", {}) or "artifacts" in c.get("outputDefinitions", {})
                   for c in spec["components"].values())
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    defaults = build.pipeline_module("daily").pipeline_arguments(load_config(PARAMS).to_dict())
    assert {name: p["defaultValue"] for name, p in inputs.items()} == defaults
    assert set(tasks["daily"]["inputs"]["parameters"]) == set(defaults)
    assert set(tasks["promote-auto"]["inputs"]["parameters"]) == {"workdir", "params"}
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {load_config(PARAMS).pipeline.image}
    # the documented mounts: the model repository sits where params.yaml's paths.models_dir says
    volumes = dict(build.pipeline_module("daily").VOLUMES)
    assert volumes["soilcast-data"] == defaults["workdir"]
    assert Path(volumes["soilcast-models"]) == Path(defaults["workdir"]) / load_config(PARAMS).paths.models_dir


def test_compile_checks_both_pipelines_and_compiles_one_on_request(tmp_path):
    check = CliRunner().invoke(app, ["pipeline", "compile", "--params", str(PARAMS), "--check"])
    assert "soilcast_daily.yaml: up to date" in check.output
    assert "soilcast_pipeline.yaml" in check.output  # checked too (its freshness: the test above)
    out = tmp_path / "daily.yaml"
    one = CliRunner().invoke(app, ["pipeline", "compile", "--params", str(PARAMS), "--pipeline", "daily",
                                   "--out", str(out)])
    assert one.exit_code == 0, one.output
    assert out.read_bytes() == DAILY.read_bytes()


def test_schedule_daily_creates_the_recurring_run_the_definition_file_shows(kfp_stub):
    host, requests = kfp_stub
    result = CliRunner().invoke(app, [
        "pipeline", "schedule", "--pipeline", "daily", "--host", host, "--cron", "0 30 6 * * *",
        "--params", str(PARAMS),
    ])
    assert result.exit_code == 0, result.output
    (upload,) = _posts(requests, "/apis/v2beta1/pipelines/upload")
    assert upload["query"]["name"] == ["soilcast-daily"]
    assert b"Name: soilcast-daily" in upload["raw"]  # the daily package, not the training one
    (version,) = _posts(requests, "/apis/v2beta1/pipelines/upload_version")
    assert version["query"]["name"] == [client.package_version_name("soilcast-daily", DAILY)]
    (recurring,) = _posts(requests, "/apis/v2beta1/recurringruns")
    sent = recurring["json"]
    assert sent["display_name"] == "soilcast-daily"
    assert int(sent["max_concurrency"]) == 1 and sent["no_catchup"] is True
    # the operator's copy (deploy/kubeflow/) is exactly this request, IDs aside
    shown = yaml.safe_load(RECURRING.read_text())
    ids = {"experiment_id": "EXPERIMENT_ID",
           "pipeline_version_reference": {"pipeline_id": "PIPELINE_ID", "pipeline_version_id": "PIPELINE_VERSION_ID"}}
    assert shown == {**sent, "max_concurrency": int(sent["max_concurrency"]), **ids}


def test_daily_arguments_are_checked_against_the_daily_pipeline(kfp_stub):
    host, requests = kfp_stub
    base = ["pipeline", "schedule", "--host", host, "--cron", "0 30 6 * * *", "--params", str(PARAMS)]
    wrong = CliRunner().invoke(app, [*base, "--pipeline", "daily", "--arg", "epochs=3"])
    assert wrong.exit_code == 1 and "unknown pipeline parameter 'epochs'" in wrong.output
    unknown = CliRunner().invoke(app, [*base, "--pipeline", "hourly"])
    assert unknown.exit_code == 2 and "expected one of training, daily" in unknown.output
    assert requests == []
    ok = CliRunner().invoke(app, [*base, "--pipeline", "daily", "--arg", "server=gw.ops:8500"])
    assert ok.exit_code == 0, ok.output
    (recurring,) = _posts(requests, "/apis/v2beta1/recurringruns")
    assert recurring["json"]["runtime_config"]["parameters"] == {"server": "gw.ops:8500"}


def test_promote_auto_component_runs_locally_in_a_project_tree(tmp_path):
    """The promote-auto step through kfp's SubprocessRunner, as a pod runs it on the volume:
    a tiny project tree with nothing archived and nothing served -> not promoted, and why."""
    import warnings

    from kfp import local

    from soilcast.config import save_config
    from soilcast.layout import Layout
    from soilcast.testing.config import tiny_config

    root = tmp_path / "project"
    cfg = tiny_config(root)
    save_config(cfg, root / "params.yaml")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               raise_on_error=True, enable_caching=False)
    steps = build.pipeline_module("daily").make_components(cfg.pipeline.image)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        task = steps.promote_auto(workdir=str(root), params="params.yaml")
    decision = json.loads(task.output)
    assert decision["promoted"] is False
    assert "nothing to decide" in decision["reason"]
    logged = Layout.from_config(cfg).operations.promotion_log.read_text().splitlines()
    assert [json.loads(line) for line in logged] == [decision]


@pytest.mark.slow
def test_daily_pipeline_run_locally_goes_red_with_the_gateway_down_and_promotes_nothing(tmp_path):
    """The whole daily pipeline through kfp's SubprocessRunner on a tiny project tree with a
    tensor store and no gateway listening: the daily step fails naming exit code 11 and its
    failed steps, and promote-auto (after daily) never runs."""
    import socket
    import warnings

    from kfp import local

    from soilcast.config import save_config
    from soilcast.layout import Layout
    from soilcast.testing.config import tiny_config
    from soilcast.testing.synthetic import write_synthetic_store

    root = tmp_path / "project"
    cfg = tiny_config(root)
    write_synthetic_store(cfg)
    save_config(cfg, root / "params.yaml")
    with socket.socket() as sock:  # a port nobody listens on: the gateway is down
        sock.bind(("127.0.0.1", 0))
        server = f"127.0.0.1:{sock.getsockname()[1]}"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "kfp"),
               raise_on_error=True, enable_caching=False)
    pipeline = build.pipeline_module("daily").build_pipeline(build.load_raw(PARAMS))
    with warnings.catch_warnings(), pytest.raises(RuntimeError, match="Inner task failed: .*daily"):
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        pipeline(workdir=str(root), params="params.yaml", server=server, delivery="", weather="", tls_ca="")
    ops = Layout.from_config(cfg).operations
    assert not ops.promotion_log.exists()  # promote-auto did not run after a failed day


def test_submit_daily_starts_one_run_of_the_daily_package(kfp_stub):
    host, requests = kfp_stub
    result = CliRunner().invoke(app, [
        "pipeline", "submit", "--pipeline", "daily", "--host", host, "--params", str(PARAMS),
        "--arg", "delivery=''",  # YAML: an empty string (no delivery)
    ])
    assert result.exit_code == 0, result.output
    (run,) = _posts(requests, "/apis/v2beta1/runs")
    assert run["json"]["pipeline_spec"]["pipelineInfo"]["name"] == "soilcast-daily"
    assert run["json"]["runtime_config"]["parameters"] == {"delivery": ""}
