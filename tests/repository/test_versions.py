"""The model repository under overlap: every change holds one lock per ``models_dir``, so a
change started while another runs is refused at once and changes nothing; staging folders
of killed exports are swept, never another repository's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from soilcast.io.lock import LockBusy
from soilcast.repository import versions
from soilcast.testing.locks import held_elsewhere


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file and folder (hidden ones too) under ``root``, files with their content."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[str((Path(dirpath) / d).relative_to(root))] = None
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def fake_version(models_dir: Path, version: int) -> None:
    staged = versions.export_staging_dir(models_dir) / str(version)
    staged.mkdir()
    (staged / "saved_model.pb").write_text(str(version))
    versions.publish(models_dir, staged, version)
    staged.parent.rmdir()  # as the export removes its staging folder


def test_every_change_is_refused_while_another_runs(tmp_path):
    models = tmp_path / "models" / "soilcast"
    for v in (1, 2, 3):
        fake_version(models, v)
    versions.land_as_canary(models, 3, "soilcast")
    staged = versions.export_staging_dir(models) / "4"
    staged.mkdir()
    before = snapshot(tmp_path)
    changes = {
        "publish": lambda: versions.publish(models, staged, 4),
        "land_as_canary": lambda: versions.land_as_canary(models, 2, "soilcast"),
        "prune": lambda: versions.prune(models, keep=1),
        "rollback": lambda: versions.rollback(models),
        "remove_stale_staging": lambda: versions.remove_stale_staging(models),
    }
    with held_elsewhere(models, versions.REPOSITORY_CHANGE):
        for name, change in changes.items():
            with pytest.raises(LockBusy, match=f"another model repository change of {models} is running"):
                change()
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in (tmp_path / "models").iterdir() if p.name.endswith(".lock")) == [".soilcast.lock"]
    with versions.repository_lock(models):  # an export holds it across its calls: they re-enter
        assert versions.publish(models, staged, 4) == models / "4"
        assert versions.land_as_canary(models, 4, "soilcast") == {"stable": 2, "canary": 4}
    assert versions.rollback(models) == {"serving": 3, "rolled_back": [4], "high_water": 4}


def test_rollback_cli_exits_75_while_the_repository_changes(tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.commands.common import LOCK_BUSY_EXIT
    from soilcast.config import save_config
    from soilcast.testing.config import tiny_config

    cfg = tiny_config(tmp_path)
    for v in (1, 2):
        fake_version(cfg.paths.models_dir, v)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    with held_elsewhere(cfg.paths.models_dir, versions.REPOSITORY_CHANGE):
        busy = CliRunner().invoke(app, ["rollback", "-p", str(params)])
    assert busy.exit_code == LOCK_BUSY_EXIT and "another model repository change of" in busy.output
    assert versions.list_versions(cfg.paths.models_dir) == [1, 2]
    assert CliRunner().invoke(app, ["rollback", "-p", str(params)]).exit_code == 0
    assert versions.list_versions(cfg.paths.models_dir) == [1]


def test_staging_of_killed_exports_is_swept_and_only_ours(tmp_path):
    models = tmp_path / "models" / "soilcast"
    fake_version(models, 1)
    staged = versions.export_staging_dir(models)
    assert staged.parent == models.parent and staged.name.startswith(".staging-soilcast-")
    (staged / "1" / "variables").mkdir(parents=True)  # a killed export's half-written SavedModel
    legacy = versions.staging_dir(models.parent)  # staged before the repository's name was in it
    inside = versions.staging_dir(models)  # a stand-in's staging inside the repository
    other = versions.staging_dir(models.parent, owner="other")  # another repository's, maybe live
    keep = [models.parent / ".staging", models.parent / "staging-soilcast-abc", models / "1"]
    keep[0].write_text("not a staging folder")
    keep[1].mkdir()
    removed = versions.remove_stale_staging(models)
    assert sorted(removed) == sorted([staged, legacy, inside])
    assert not any(p.exists() for p in removed) and other.is_dir() and all(p.exists() for p in keep)
    assert versions.remove_stale_staging(models) == []
    assert versions.remove_stale_staging(tmp_path / "absent" / "soilcast") == []
