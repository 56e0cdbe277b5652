"""The layout owns every artifact path, dvc.yaml spells the same paths, and `dvc repro` runs
with data folders renamed in params.yaml alone (the real dvc, tiny data)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from soilcast.config import deep_merge, load_config, read_params
from soilcast.layout import Bundle, Layout, RunDir, relocate
from soilcast.stages import DATA, STAGES
from soilcast.testing.config import TINY
from tests.conftest import PARAMS, REPO

DVC_STAGES = ("validate", "regrid", "clip", "stack", "forecasts", "train", "evaluate", "gate", "export")


def _resolve(text: str, raw: dict[str, Any], item: str | None = None) -> str:
    """DVC's ``${a.b}`` templating over a params mapping (and ``${item}`` of a foreach)."""
    def value(m: re.Match) -> str:
        if m.group(1) == "item":
            return str(item)
        node: Any = raw
        for part in m.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", value, text)


def _options(cmd: str) -> dict[str, str]:
    words = cmd.split()
    return {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--") and not words[i + 1].startswith("--")}


def test_every_dvc_cmd_passes_the_paths_its_deps_and_outs_name_and_the_layout_agrees():
    raw = read_params(PARAMS)
    lay = Layout.from_config(load_config(PARAMS))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert tuple(stages) == DVC_STAGES
    resolved: dict[str, tuple[dict[str, str], set[str]]] = {}
    for name, stage in stages.items():
        body, item = (stage["do"], "fc") if "foreach" in stage else (stage, None)
        paths = set()
        for key in ("deps", "outs", "metrics", "plots"):
            for entry in body.get(key, []):
                paths.add(_resolve(next(iter(entry)) if isinstance(entry, dict) else entry, raw, item))
        resolved[name] = (_options(_resolve(body["cmd"], raw, item)), paths)
    # the table's ports, where the default tree keeps each (the one wiring; soilcast.stages)
    expected = {st.name: {p.option: DATA[p.data].where(lay, "fc" if st.foreach else None) for p in st.ports}
                for st in STAGES}
    for name, want in expected.items():
        options, paths = resolved[name]
        assert {k: v for k, v in options.items() if k != "--model"} == {k: str(v) for k, v in want.items()}, name
        # every path the command is given is a dep or an out, except the model repository
        # (outside DVC), clip's --raw (it only names the basins file) and the forecasts'
        # --raw (it reads only the forecast folder, a dep: checked below)
        untracked = {str(lay.models_dir)} | ({str(lay.raw_dir)} if name in ("clip", "forecasts") else set())
        assert {str(v) for v in want.values()} - untracked <= paths | {
            str(Path(p).parent) for p in paths}, name
    # the raw folders validate and regrid depend on are the sources' folders under --raw
    for name in ("validate", "regrid"):
        assert {str(lay.raw_dir / raw["sources"][s]["folder"]) for s in ("met", "target")} <= resolved[name][1]
    assert str(lay.raw_dir / raw["sources"]["forecast"]["folder"]) in resolved["forecasts"][1]


def test_run_folders_and_bundles_build_on_any_directory(tmp_path):
    run, bundle = RunDir(tmp_path / "artifact"), Bundle(tmp_path / "7")
    assert run.model.parent == run.record.parent == run.checkpoints.parent == tmp_path / "artifact"
    assert {p.parent for p in (bundle.metadata, bundle.drift_reference, bundle.card, bundle.warmup)} == {bundle.extra}
    assert bundle.saved_model.parent == bundle.variables.parent == tmp_path / "7"
    assert relocate("data/raw/basins/b.geojson", "data/raw", tmp_path) == tmp_path / "basins/b.geojson"


def _dvc() -> str:
    beside = Path(sys.executable).parent / "dvc"  # installed with the project, in its venv
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    assert found, "the dvc executable must be installed (it is in requirements.lock)"
    return found


def test_dvc_repro_runs_with_raw_folders_renamed_in_params_only(tmp_path):
    """What a user with raw data under other folder names does: edit params.yaml, put the
    files there, `dvc repro stack`; every stage reads and writes where params.yaml says."""
    renamed = {
        "paths": {"raw_dir": "inputs", "interim_dir": "work", "processed": "store/t.zarr"},
        "sources": {"met": {"folder": "reanalysis"}, "target": {"folder": "soil"}, "forecast": {"folder": "nwp"}},
        "basins": {"path": "inputs/basins/demo_regions.geojson"},  # where the demo writes it
        "validate": {"report_dir": "reports/validate"},
        "demo": {"india_outline": str(REPO / "data/static/india-ne110m.geojson")},
    }
    small = {k: TINY[k] for k in ("period", "demo", "grid", "split")}
    small["demo"] = {**small["demo"], "forecast_archive": {"years": [2013, 2013]}}
    raw = deep_merge(deep_merge(read_params(PARAMS), small), renamed)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "src").symlink_to(REPO / "src", target_is_directory=True)  # code deps of the stages
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    assert run("git", "init", "-q").returncode == 0 and run(_dvc(), "init", "-q").returncode == 0
    demo = run("soilcast", "demo-data")  # into paths.raw_dir, the sources' folders under it
    assert demo.returncode == 0, demo.stderr
    assert {p.name for p in (tmp_path / "inputs").iterdir()} == {"reanalysis", "soil", "basins", "nwp"}
    repro = run(_dvc(), "repro", "stack")
    assert repro.returncode == 0, repro.stdout[-3000:] + repro.stderr[-3000:]
    for stage in ("validate", "regrid", "clip", "stack"):
        assert f"Running stage '{stage}'" in repro.stdout, stage
    lay = Layout.from_config(load_config(tmp_path / "params.yaml"))
    assert lay.raw_dir == Path("inputs") and lay.regridded_dir == Path("work/regridded")
    with_cwd = lambda p: tmp_path / p  # noqa: E731
    assert with_cwd(lay.report.report).is_file()
    assert sorted(p.stem for p in with_cwd(lay.regridded_dir).glob("*.nc")) == sorted(
        [v["name"] for v in raw["variables"]] + [raw["target"]["name"]])
    assert with_cwd(lay.mask_file).is_file() and with_cwd(lay.tensors).is_dir()
    assert not (tmp_path / "data").exists()  # nothing where the old defaults pointed
    status = run(_dvc(), "status", "stack")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout + status.stderr
