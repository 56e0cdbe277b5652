"""The CLI: every command is reachable and documented, and bad params are a usage error
(exit 2, the key named), never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from soilcast.cli import app
from tests.conftest import PARAMS, REPO


def _commands() -> dict[str, object]:
    group = typer.main.get_command(app)
    return dict(group.commands)  # type: ignore[attr-defined]


def test_every_command_is_in_the_readme_table_and_back():
    table = (REPO / "README.md").read_text().split("## Commands", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `soilcast ([a-z-]+)", table, flags=re.M))
    assert documented == set(_commands()), "README's command table and the CLI disagree"


def test_every_dvc_stage_runs_a_soilcast_command():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    cmds = [(s.get("do") or s)["cmd"] for s in stages.values()]
    used = {c.split()[1] for c in cmds}
    assert all(c.startswith("soilcast ") for c in cmds) and used <= set(_commands())


def _bad_params(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load(PARAMS.read_text())
    edit(raw)
    out = tmp_path / "params.yaml"
    out.write_text(yaml.safe_dump(raw))
    return out


def test_an_invalid_value_exits_2_naming_the_key(tmp_path):
    params = _bad_params(tmp_path, lambda r: r["training"].update(epochs=0))
    run = CliRunner().invoke(app, ["check-config", "--params", str(params)])
    assert run.exit_code == 2 and "training.epochs" in run.output and "Traceback" not in run.output


def test_an_invalid_network_section_exits_2_naming_the_key(tmp_path):
    params = _bad_params(tmp_path, lambda r: r["models"]["gru"].update(units=0))
    run = CliRunner().invoke(app, ["check-config", "--params", str(params)])
    assert run.exit_code == 2 and "models.gru.units" in run.output


def test_a_missing_params_file_exits_2_naming_it(tmp_path):
    run = CliRunner().invoke(app, ["check-config", "--params", str(tmp_path / "nope.yaml")])
    assert run.exit_code == 2 and "nope.yaml" in run.output and "not found" in run.output
