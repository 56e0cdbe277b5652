"""The scheduler files in deploy/ (systemd timer + service, cron): well-formed, 06:30 UTC, and
the command line they run parses as a real ``soilcast`` command with real options."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from soilcast.cli import app
from soilcast.operations.daily import EXIT
from tests.conftest import REPO

SYSTEMD = REPO / "deploy" / "systemd"
SERVICE = SYSTEMD / "soilcast-daily.service"
TIMER = SYSTEMD / "soilcast-daily.timer"
CRON = REPO / "deploy" / "cron" / "soilcast-daily.cron"
PROJECT = "/opt/soilcast"  # where the files expect the checkout (and its .venv)
COMMAND = ["daily", "--server", "127.0.0.1:8500", "--delivery", "data/incoming"]


def _unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def _soilcast_argv(command: str) -> list[str]:
    """The arguments after the ``soilcast`` executable, up to the first shell operator."""
    words = shlex.split(command, posix=True)
    start = next(i for i, w in enumerate(words) if w == "soilcast" or w.endswith("/bin/soilcast"))
    argv = []
    for word in words[start + 1:]:
        if word in ("&&", "||", ";", "|") or word.startswith((">", "2>")):
            break
        argv.append(word)
    return argv


def _parses_as_a_soilcast_command(argv: list[str]) -> dict:
    """Parse ``argv`` with the CLI's own click command (options, types, required ones), as the
    shell would run it, without running it."""
    group = typer.main.get_command(app)
    name, *args = argv
    command = group.commands.get(name)
    assert command is not None, f"`soilcast {name}` is not a command: {sorted(group.commands)}"
    try:
        return command.make_context(name, args).params
    except Exception as err:  # typer's (vendored) click usage errors: unknown option, bad value
        raise AssertionError(f"`soilcast {shlex.join(argv)}`: {err}") from None


def test_systemd_units_run_daily_at_0630_utc_as_a_oneshot_that_treats_75_as_success():
    service, timer = _unit(SERVICE), _unit(TIMER)
    s = service["Service"]
    assert s["Type"] == "oneshot"
    assert s["WorkingDirectory"] == PROJECT
    exec_start = shlex.split(s["ExecStart"])
    assert exec_start[0] == f"{PROJECT}/.venv/bin/soilcast" and exec_start[1:] == COMMAND
    assert "75" in s["SuccessExitStatus"].split()
    assert "75" in s["RestartPreventExitStatus"].split()
    assert "11" not in s["RestartPreventExitStatus"].split()  # a gateway that was down: retried
    t = timer["Timer"]
    assert t["OnCalendar"] == "*-*-* 06:30:00 UTC"
    assert t["Persistent"] == "true"
    assert t["Unit"] == SERVICE.name
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (the structural test above still runs)")
    # verify insists that ExecStart's program exists: point it at this checkout's venv
    exe = REPO / ".venv" / "bin" / "soilcast"
    if not exe.is_file():
        pytest.skip(f"{exe} missing (no venv in this checkout)")
    text = SERVICE.read_text().replace(f"{PROJECT}/.venv/bin/soilcast", str(exe))
    text = text.replace(f"WorkingDirectory={PROJECT}", f"WorkingDirectory={REPO}")
    (tmp_path / SERVICE.name).write_text(text)
    shutil.copy(TIMER, tmp_path / TIMER.name)
    done = subprocess.run(["systemd-analyze", "verify", SERVICE.name, TIMER.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    calendar = subprocess.run(["systemd-analyze", "calendar", _unit(TIMER)["Timer"]["OnCalendar"]],
                              capture_output=True, text=True, timeout=60)
    assert calendar.returncode == 0 and "Normalized form: *-*-* 06:30:00 UTC" in calendar.stdout


def _cron_job() -> tuple[list[str], str, str]:
    """(time fields, user, command) of the one job line; environment lines are skipped."""
    text = CRON.read_text()
    assert text.endswith("\n")  # cron ignores a last line without a newline
    jobs = [line for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#") and not re.match(r"^\w+=", line)]
    assert len(jobs) == 1, jobs
    fields = jobs[0].split(None, 6)
    return fields[:5], fields[5], fields[6]


def test_cron_runs_daily_at_0630_in_the_project_as_the_service_does():
    when, user, command = _cron_job()
    assert when == ["30", "6", "*", "*", "*"]
    assert user == "soilcast"
    assert command.startswith(f"cd {PROJECT} && .venv/bin/soilcast ")
    assert _soilcast_argv(command) == COMMAND
    assert "flock" not in command  # soilcast locks itself (exit 75)


@pytest.mark.parametrize(("code", "alert"), [(0, False), (75, False), (10, True), (11, True), (13, True), (1, True)])
def test_cron_line_prints_an_alert_only_on_a_real_failure(tmp_path, code, alert):
    """Run the job's shell text with a stand-in for the soilcast executable that only exits
    with ``code`` (the real command needs a gateway and a data tree): cron mails what it prints."""
    project = tmp_path / "project"
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / "artifacts").mkdir()
    exe = project / ".venv" / "bin" / "soilcast"
    exe.write_text(f"#!/bin/sh\necho \"report of $*\"\nexit {code}\n")
    exe.chmod(0o755)
    _, _, command = _cron_job()
    done = subprocess.run(["/bin/sh", "-c", command.replace(PROJECT, str(project))],
                          capture_output=True, text=True, timeout=60)
    assert (done.stdout.strip() != "") is alert, done.stdout
    if alert:
        assert f"exit code {code}" in done.stdout
    assert "report of daily --server" in (project / "artifacts" / "daily-cron.log").read_text()


def test_scheduler_files_explain_every_exit_code_of_soilcast_daily():
    for path in (SERVICE, CRON):
        comments = "\n".join(line for line in path.read_text().splitlines() if line.startswith("#"))
        for code in (0, *EXIT.values()):
            assert re.search(rf"\b{code}\b", comments), f"{path.name}: exit code {code} not explained"


def test_the_scheduled_command_line_is_a_real_soilcast_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as in the project folder: relative paths as the files give them
    (tmp_path / "data" / "incoming").mkdir(parents=True)
    for argv in (shlex.split(_unit(SERVICE)["Service"]["ExecStart"])[1:], _soilcast_argv(_cron_job()[2])):
        params = _parses_as_a_soilcast_command(argv)
        assert params["server"] == "127.0.0.1:8500"
        assert Path(params["delivery"]) == Path("data/incoming")
    with pytest.raises(AssertionError, match="(?i)no such option"):  # the check bites
        _parses_as_a_soilcast_command(["daily", "--server", "x:1", "--deliver", "d"])
