"""`make test` runs the whole suite: Prometheus is installed when missing, or make says how."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.conftest import REPO

MAKE = shutil.which("make") or "/usr/bin/make"


def _bin(tmp_path: Path, **scripts: str) -> Path:
    """A PATH folder holding only the given shell scripts (name -> body)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, body in scripts.items():
        (folder / name.replace("_", "-")).write_text(f"#!/bin/sh\n{body}\n")
        (folder / name.replace("_", "-")).chmod(0o755)
    return folder


def _make_prometheus(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "-s", "-C", str(REPO), "prometheus"], env={"PATH": str(path)},
                          capture_output=True, text=True, timeout=60)


def test_without_root_make_stops_with_the_install_command(tmp_path):
    res = _make_prometheus(_bin(tmp_path, id="echo 1000"))
    assert res.returncode != 0
    assert "make test needs promtool and prometheus" in res.stderr
    assert "sudo apt-get install -y prometheus" in res.stderr


def test_as_root_with_apt_get_make_installs_prometheus(tmp_path):
    log = tmp_path / "apt.log"
    res = _make_prometheus(_bin(tmp_path, id="echo 0", apt_get=f'echo "$@" >> {log}'))
    assert res.returncode == 0, res.stderr
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq prometheus"]


def test_present_prometheus_installs_nothing(tmp_path):
    log = tmp_path / "apt.log"
    res = _make_prometheus(_bin(tmp_path, id="echo 0", apt_get=f"echo called >> {log}",
                                promtool="true", prometheus="true"))
    assert res.returncode == 0 and not log.exists()


def test_test_target_depends_on_prometheus_and_monitoring_tests_never_skip():
    dry = subprocess.run([MAKE, "-n", "-C", str(REPO), "test"], capture_output=True, text=True, timeout=60)
    assert "command -v promtool" in dry.stdout  # the prerequisite runs before pytest
    text = (REPO / "tests" / "serving" / "test_telemetry.py").read_text()
    assert "pytest.skip" not in text and "importorskip" not in text


def test_make_test_runs_the_linter_before_the_suite(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than requirements.lock: no install step
    res = subprocess.run([MAKE, "-n", "-C", str(REPO), "test", f"VENV={venv}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lint = res.stdout.find(f"{venv}/bin/ruff check src tests benchmarks components pipelines")
    suite = res.stdout.find("-m pytest")
    assert 0 <= lint < suite, res.stdout
