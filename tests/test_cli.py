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


_NO_TF_RUN = """
import sys
from typer.testing import CliRunner
from soilcast.cli import app
runs = {
    "forecast": ["forecast", "--server", "x:1", "--date", "2020-13-45"],
    "hindcast": ["hindcast", "--server", "x:1", "--start", "2020-01-01", "--end", "2020-02-30"],
    "daily": ["daily", "--server", "no-port"],
    "daily-ca": ["daily", "--server", "x:1", "--tls-ca", "/nonexistent/ca.pem"],
}
for name, args in runs.items():
    run = CliRunner().invoke(app, args + ["--params", sys.argv[1]])
    print(name, run.exit_code, run.output.strip().replace("\\n", " "))
print("tensorflow" in sys.modules, "keras" in sys.modules)
"""


def test_bad_arguments_fail_before_tensorflow_is_imported():
    """A malformed date or server is rejected with its message in a fresh interpreter that
    never imports TensorFlow or keras (the check comes before load_cfg and the client)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _NO_TF_RUN, str(PARAMS)], capture_output=True, text=True,
                          check=True, cwd=REPO)
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "False False", done.stdout + done.stderr
    out = dict(line.split(" ", 1) for line in lines[:-1])
    assert out["forecast"] == "1 forecast: --date '2020-13-45': expected YYYY-MM-DD or 'latest'"
    assert out["hindcast"] == "1 hindcast: --end '2020-02-30': expected YYYY-MM-DD"
    assert out["daily"] == "1 daily: --server 'no-port': expected HOST:PORT (e.g. localhost:8500)"
    assert out["daily-ca"] == "1 daily: --tls-ca /nonexistent/ca.pem: no such file"
    assert "Traceback" not in done.stderr


def test_tensorflow_start_up_noise_is_recognised_and_nothing_else():
    from soilcast.commands.common import TF_IMPORT_NOISE

    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796419866.549609    8169 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796419866.551261    8169 cudart_stub.cc:31] Could not find cuda drivers on your machine",
        "I0000 00:00:1796419866.660460    8169 cpu_feature_guard.cc:227] This TensorFlow binary is optimized",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the flags.",
    ]
    kept = ["E0000 00:00:1796419866.1 8169 loader.cc:12] failed to load libfoo.so",
            "Traceback (most recent call last):", "WARNING: something else"]
    assert all(TF_IMPORT_NOISE.match(line) for line in noise)
    assert not any(TF_IMPORT_NOISE.match(line) for line in kept)


def test_quiet_native_logs_keeps_the_users_level(monkeypatch):
    from soilcast.commands.common import quiet_native_logs

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    quiet_native_logs()
    assert __import__("os").environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    quiet_native_logs()
    assert __import__("os").environ["TF_CPP_MIN_LOG_LEVEL"] == "3"


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_train_prints_one_line_per_epoch_without_a_terminal():
    from soilcast.commands.ml import progress_verbosity

    assert progress_verbosity(False, _Stream(False)) == 2  # log file / CI: keras' one line per epoch
    assert progress_verbosity(False, _Stream(True)) == "auto"  # terminal: the progress bar
    assert progress_verbosity(True, _Stream(True)) == 0 and progress_verbosity(True, _Stream(False)) == 0
