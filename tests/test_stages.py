"""The stage table's ports: the one wiring of paths to stage arguments that the CLI, the tests'
wrappers, the Kubeflow components and dvc.yaml's check all use."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer
import yaml

from soilcast.cli import app
from soilcast.dvc_stages import declared_stages, port_problems
from soilcast.layout import EvalDir, Layout, RunDir
from soilcast.stages import DATA, STAGES, arguments, load_function

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("st", STAGES, ids=lambda s: s.name)
def test_every_port_is_a_parameter_of_the_function_and_an_option_of_the_command(st) -> None:
    params = inspect.signature(load_function(st.name)).parameters
    command = typer.main.get_command(app).commands[st.command]
    options = {o for p in command.params for o in getattr(p, "opts", ())}
    for port in st.ports:
        assert port.arg in params, f"{st.name}: {port.arg} is no parameter of {st.function}"
        assert port.option in options, f"{st.name}: soilcast {st.command} has no {port.option}"
        assert port.data in DATA
    assert len({p.arg for p in st.ports}) == len(st.ports) == len({p.option for p in st.ports})


def test_arguments_are_the_default_tree_unless_given(tiny_cfg) -> None:
    lay = Layout.from_config(tiny_cfg)
    assert arguments("regrid", tiny_cfg, lay) == {
        "raw_dir": lay.raw_dir, "report_dir": lay.report_dir, "out_dir": lay.regridded_dir}
    other = Path("elsewhere/regridded")
    assert arguments("regrid", tiny_cfg, lay, {"out_dir": other, "raw_dir": None})["out_dir"] == other
    train = arguments("train", tiny_cfg, lay, item="fc")
    assert train == {"tensors": lay.tensors, "run": RunDir(lay.train_dir / "fc")}
    given = arguments("train", tiny_cfg, lay, {"run": Path("runs/x")}, item="fc")["run"]
    assert given == RunDir(Path("runs/x"))
    evaluate = arguments("evaluate", tiny_cfg, lay, names=("fc", "gru"))
    assert evaluate["runs"] == {"fc": RunDir(lay.train_dir / "fc"), "gru": RunDir(lay.train_dir / "gru")}
    assert evaluate["out"] == EvalDir(lay.eval_dir)


def test_a_port_whose_switch_is_off_is_none_unless_given(tiny_cfg) -> None:
    lay = Layout.from_config(tiny_cfg)
    off = tiny_cfg.model_copy(update={"sources": tiny_cfg.sources.model_copy(update={"forecast": None})})
    assert arguments("gate", off, lay)["forecasts"] is None
    assert arguments("gate", off, lay, {"forecasts": Path("f")})["forecasts"] == Path("f")
    if tiny_cfg.sources.forecast is not None:
        assert arguments("gate", tiny_cfg, lay)["forecasts"] == lay.forecast_store


def test_an_unknown_argument_is_refused_naming_the_ports(tiny_cfg) -> None:
    with pytest.raises(KeyError, match="no path argument \\['raw'\\].*raw_dir"):
        arguments("validate", tiny_cfg, Layout.from_config(tiny_cfg), {"raw": Path("x")})


def test_dvc_yaml_paths_that_leave_the_table_are_named(tmp_path) -> None:
    declared = declared_stages(REPO / "dvc.yaml")
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    body = yaml.safe_load(yaml.safe_dump(declared["regrid"]))
    assert port_problems("regrid", body, tmp_path / "dvc.yaml") == []
    body["cmd"] = body["cmd"].replace("/regridded", "/regridded_v2")
    body["deps"] = [d for d in body["deps"] if "report_dir" not in d]
    problems = port_problems("regrid", body, tmp_path / "dvc.yaml")
    assert any("--out" in p and "regridded_v2" in p for p in problems)
    assert any("'report'" in p and "not among its deps" in p for p in problems)
    assert not any("not among its outs" in p for p in problems)  # the outs still hold it


def test_the_kubeflow_pipeline_wires_every_stage_as_the_table_says() -> None:
    """Each stage task of the compiled pipeline gets, for each input port, the artifact named
    after its data product (runtime.artifact_of), from the task the table says writes it."""
    from soilcast.pipeline.runtime import artifact_of

    tasks = yaml.safe_load((REPO / "pipelines" / "soilcast_pipeline.yaml").read_text())["root"]["dag"]["tasks"]
    writers = {artifact_of(p.data): s.name for s in STAGES for p in s.ports if p.out}
    # not stages of the table: the raw data comes from ingest; the runs are train's outputs,
    # collected by the fan-out sub-pipeline
    writers |= {"raw": "ingest", "models": "train-networks"}
    checked = 0
    for st in STAGES:
        if st.name not in tasks:  # train (in the fan-out) and export (in the blessed branch)
            continue
        wired = tasks[st.name].get("inputs", {}).get("artifacts", {})
        wanted = {artifact_of(p.data) for p in st.ports if not p.out and p.data != "repository"}
        assert wanted <= set(wired), f"{st.name}: the table's inputs {sorted(wanted - set(wired))} are not wired"
        for name in wanted:
            source = wired[name]["taskOutputArtifact"]
            assert source["producerTask"] == writers[name], f"{st.name}.{name} comes from {source}"
            assert source["outputArtifactKey"] in (name, "Output"), f"{st.name}.{name}: renamed on the way"
        checked += 1
    assert checked == 7  # validate regrid clip stack forecasts evaluate gate
