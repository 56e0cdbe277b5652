"""Promotion under overlap: two label changes at once never lose one. A promote started while
another change of the repository runs is refused at once (``soilcast promote`` exits 75) and
writes nothing; promotes one after the other keep every change."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from soilcast.io.lock import LockBusy
from soilcast.repository import versions
from soilcast.repository.labels import labels_path, read_labels
from soilcast.serving.promotion import promote
from soilcast.testing.locks import held_elsewhere


def servable(models_dir: Path, version: int) -> None:
    """A published version whose metadata reads as the gateway reads it (no graph needed)."""
    staged = versions.staging_dir(models_dir.parent) / str(version)
    (staged / "assets.extra").mkdir(parents=True)
    meta = {"grid": {"lat": [10.0, 10.5], "lon": [75.0, 75.5]}, "variables": ["tp"], "seq_len": 2,
            "mask": [[1, 1], [1, 0]]}
    (staged / "assets.extra" / "soilcast_metadata.json").write_text(json.dumps(meta))
    versions.publish(models_dir, staged, version)


@pytest.fixture
def repository(tmp_path) -> Path:
    """Versions 1..3, stable 1 and canary 3 (as three exports leave it)."""
    models = tmp_path / "models" / "soilcast"
    for v in (1, 2, 3):
        servable(models, v)
        versions.land_as_canary(models, v, "soilcast")
    assert read_labels(models) == {"stable": 1, "canary": 3}
    return models


def test_promotes_one_after_the_other_keep_both_changes(repository):
    assert promote(repository, 2, "stable", "soilcast") == {"stable": 2, "canary": 3}
    assert promote(repository, 1, "canary", "soilcast") == {"stable": 2, "canary": 1}
    assert read_labels(repository) == {"stable": 2, "canary": 1}


def test_promotes_while_the_repository_changes_are_refused_and_write_nothing(repository):
    """Two promotes of different labels (each its own thread, as two operators) while another
    change holds the repository: both refused, the labels file byte-identical."""
    before = labels_path(repository).read_bytes()
    refused: dict[str, BaseException] = {}

    def operator(version: int, label: str) -> None:
        try:
            promote(repository, version, label, "soilcast")
        except LockBusy as err:
            refused[label] = err

    with held_elsewhere(repository, versions.REPOSITORY_CHANGE):
        threads = [threading.Thread(target=operator, args=a) for a in ((2, "stable"), (1, "canary"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(LockBusy) as err:
            promote(repository, 2, "stable", "soilcast")
    assert sorted(refused) == ["canary", "stable"]
    assert str(err.value).startswith(f"another model repository change of {repository} is running (pid ")
    assert labels_path(repository).read_bytes() == before
    assert promote(repository, 2, "stable", "soilcast") == {"stable": 2, "canary": 3}  # run again after


def test_promote_cli_exits_75_when_the_repository_is_busy(repository, tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.commands.common import LOCK_BUSY_EXIT
    from soilcast.config import save_config
    from soilcast.testing.config import tiny_config

    cfg = tiny_config(tmp_path)
    assert cfg.paths.models_dir == repository
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    before = labels_path(repository).read_bytes()
    with held_elsewhere(repository, versions.REPOSITORY_CHANGE):
        busy = CliRunner().invoke(app, ["promote", "2", "--label", "stable", "--params", str(params)])
    assert busy.exit_code == LOCK_BUSY_EXIT, busy.output
    assert "another model repository change of" in busy.output and "run again when it has finished" in busy.output
    assert labels_path(repository).read_bytes() == before
    ok = CliRunner().invoke(app, ["promote", "2", "--label", "stable", "--params", str(params)])
    assert ok.exit_code == 0 and read_labels(repository) == {"stable": 2, "canary": 3}, ok.output
