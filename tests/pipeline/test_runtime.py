"""Runtime helpers of the operations components: the project tree on the volume, and the
daily report as a step's output or a red run. (The training components' helpers are tested
in test_local.py beside the pipeline they serve.)"""

from __future__ import annotations

import json
import shutil

import pytest

from soilcast.operations.daily import EXIT, DailyReport, Step
from soilcast.pipeline import runtime
from tests.conftest import PARAMS


def test_workdir_config_resolves_the_params_paths_in_the_project_tree(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # restored after the test: workdir_config enters the tree
    tree = tmp_path / "volume"
    tree.mkdir()
    shutil.copy(PARAMS, tree / "params.yaml")
    home = tmp_path / "image"  # SOILCAST_HOME: the image's copy of the static files
    (home / "data" / "static").mkdir(parents=True)
    monkeypatch.setenv(runtime.HOME_ENV, str(home))
    cfg, layout = runtime.workdir_config(str(tree), "params.yaml")
    assert tmp_path.joinpath("volume").samefile(".")
    assert layout.operations.root.resolve() == (tree / "artifacts" / "operations").resolve()
    assert layout.models_dir.resolve() == (tree / "models" / "soilcast").resolve()
    # the India outline is not on the volume: it comes from the image
    assert cfg.demo.india_outline == home / "data/static/india-ne110m.geojson"


def test_daily_outcome_passes_a_good_day_and_fails_a_bad_one_naming_code_and_steps(capsys):
    good = DailyReport([Step("ingest", "skipped"), Step("verify"), Step("forecast_stable")])
    out = runtime.daily_outcome(good)
    assert json.loads(out)["exit_code"] == 0
    assert out in capsys.readouterr().out  # the report is in the step's log too
    bad = DailyReport([Step("ingest"), Step("verify"),
                       Step("forecast_stable", "failed", EXIT["forecast"], message="gateway:8500: UNAVAILABLE"),
                       Step("forecast_canary", "failed", EXIT["forecast"])])
    with pytest.raises(RuntimeError, match=r"exit code 11 \(forecast\); failed steps: "
                       r"forecast_stable \(code 11: gateway:8500: UNAVAILABLE\); forecast_canary \(code 11\)"):
        runtime.daily_outcome(bad)
    locked = DailyReport([Step("ingest", "failed", EXIT["locked"], message="held by pid 7")])
    with pytest.raises(RuntimeError, match=r"exit code 75 \(locked\); failed steps: ingest"):
        runtime.daily_outcome(locked)
