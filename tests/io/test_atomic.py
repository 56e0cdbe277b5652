"""Atomic writes: the target is the old version or the new one, never a mix, and nothing is
left beside it; stale temporaries of killed runs are found and removed, nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import soilcast
from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text, remove_stale_temporaries

SRC = str(Path(soilcast.__file__).parents[1])  # the checkout under test, for the child process


class Boom(RuntimeError):
    pass


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def test_file_is_published_only_on_success(tmp_path):
    target = tmp_path / "sub" / "metrics.json"  # the parent is created
    with atomic_path(target) as tmp:
        assert tmp.parent.parent == target.parent and tmp.name == target.name
        tmp.write_text("new")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text() == "new" and _siblings(target) == ["metrics.json"]


def test_failed_file_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise Boom
    assert target.read_text() == "old" and _siblings(target) == ["record.json"]


def test_failed_first_write_leaves_nothing(tmp_path):
    with pytest.raises(Boom):
        with atomic_path(tmp_path / "model.keras") as tmp:
            tmp.write_bytes(b"partial")
            raise Boom
    assert list(tmp_path.iterdir()) == []


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_directory_is_replaced_whole_not_merged(tmp_path):
    target = tmp_path / "tensors.zarr"
    (target / "X").mkdir(parents=True)
    (target / "X" / "0").write_text("old chunk")
    (target / "stale.json").write_text("old")
    with atomic_path(target) as tmp:
        (tmp / "X").mkdir(parents=True)
        (tmp / "X" / "0").write_text("new chunk")
    assert _tree(target) == {"X/0": "new chunk"} and _siblings(target) == ["tensors.zarr"]


def test_failed_directory_write_keeps_the_old_directory(tmp_path):
    target = tmp_path / "1"
    target.mkdir()
    (target / "saved_model.pb").write_text("v1")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "saved_model.pb").write_text("half of v2")
            raise Boom
    assert _tree(target) == {"saved_model.pb": "v1"} and _siblings(target) == ["1"]


def test_a_symlinked_file_target_is_replaced_not_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("kept")
    link = tmp_path / "view.json"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert not link.is_symlink() and link.read_text() == "new" and real.read_text() == "kept"


def test_json_is_sorted_indented_and_newline_terminated(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"b": 1, "a": {"path": Path("x/y"), "n": [1, 2]}})
    text = target.read_text()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"') and '\n  "a": {' in text
    assert json.loads(text) == {"a": {"n": [1, 2], "path": "x/y"}, "b": 1}


def test_unserialisable_json_keeps_the_old_file(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_json(target, {"epochs_done": 1})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        atomic_write_json(target, {"epochs_done": 2, "history": loop})
    assert json.loads(target.read_text()) == {"epochs_done": 1} and _siblings(target) == ["state.json"]


KILLED = """
import os, sys
from pathlib import Path
from soilcast.io.atomic import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "chunk").write_text("partial")
    print(tmp.parent, flush=True)
    os._exit(9)  # killed mid-write: no cleanup runs
"""


def _killed_write(target: Path) -> Path:
    """The temporary a run killed inside ``atomic_path`` leaves behind (a real process)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", KILLED, str(target)], capture_output=True, text=True, env=env)
    assert run.returncode == 9, run.stderr
    tmp = Path(run.stdout.strip())
    assert (tmp / target.name / "chunk").is_file()
    return tmp


def test_stale_temporaries_of_the_target_and_only_those_are_removed(tmp_path):
    target = tmp_path / "tensors.zarr"
    target.mkdir()
    (target / "ok").write_text("current")
    stale_dirs = {_killed_write(target).name, _killed_write(target).name}
    old = tmp_path / ".tensors.zarr.old"
    old.mkdir()
    neighbours = [".tensors.tmp", ".tensors.zarr2.abc.tmp", "tensors.zarr.x.tmp", ".other.zarr.abc.tmp", "mask.nc",
                  ".tensors.zarr.json.abcd1234.tmp"]  # a sibling tensors.zarr.json's temporary
    for name in neighbours:
        (tmp_path / name).write_text("not ours")
    removed = remove_stale_temporaries(target)
    assert {p.name for p in removed} == stale_dirs | {old.name} and len(removed) == 3
    assert _siblings(target) == sorted([*neighbours, "tensors.zarr"])
    assert _tree(target) == {"ok": "current"}
    assert remove_stale_temporaries(target) == []


def test_stale_temporaries_with_glob_characters_in_the_name(tmp_path):
    target = tmp_path / "run[1].json"
    stale = _killed_write(target)
    (tmp_path / ".run1.json.abc.tmp").write_text("a different target")
    assert remove_stale_temporaries(target) == [stale]
    assert _siblings(target) == [".run1.json.abc.tmp"]
    assert remove_stale_temporaries(tmp_path / "absent" / "x") == []


def test_a_dangling_old_link_is_removed(tmp_path):
    target = tmp_path / "models"
    os.symlink(tmp_path / "gone", tmp_path / ".models.old")
    assert [p.name for p in remove_stale_temporaries(target)] == [".models.old"]
    assert list(tmp_path.iterdir()) == []


def test_a_symlinked_directory_target_is_written_through_and_the_link_stays(tmp_path):
    disk = tmp_path / "big-disk" / "tensors.zarr"  # the user keeps the store elsewhere
    disk.mkdir(parents=True)
    (disk / "old").write_text("v1")
    link = tmp_path / "processed" / "tensors.zarr"
    link.parent.mkdir()
    link.symlink_to(disk, target_is_directory=True)
    with atomic_path(link) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("v2")
    assert link.is_symlink() and link.resolve() == disk.resolve()
    assert _tree(disk) == {"new": "v2"} and _siblings(disk) == ["tensors.zarr"]
    assert _siblings(link) == ["tensors.zarr"]


def test_a_run_killed_between_the_renames_gets_its_old_directory_back(tmp_path):
    target = tmp_path / "tensors.zarr"
    old = tmp_path / ".tensors.zarr.old"  # the first rename happened, the second did not
    old.mkdir()
    (old / "ok").write_text("current")
    assert [p.name for p in remove_stale_temporaries(target)] == []
    assert _tree(target) == {"ok": "current"} and _siblings(target) == ["tensors.zarr"]


def test_restore_old_says_what_it_put_back(tmp_path):
    """``soilcast ingest`` reports a recovered store: restore_old names the .old it came from."""
    from soilcast.io.atomic import restore_old

    target = tmp_path / "tensors.zarr"
    assert restore_old(target) is None
    old = tmp_path / ".tensors.zarr.old"
    old.mkdir()
    (old / "ok").write_text("current")
    assert restore_old(target) == old and _tree(target) == {"ok": "current"}
    old.mkdir()  # a .old beside a target that exists is a leftover, not the only copy
    assert restore_old(target) is None and old.is_dir()


def test_a_symlinked_store_is_swept_where_the_writes_went(tmp_path):
    """A store kept on a bigger disk behind a link: the temporaries of a killed write and the
    .old of one killed between its renames lie beside the directory linked to."""
    disk = tmp_path / "big-disk" / "tensors.zarr"
    disk.mkdir(parents=True)
    (disk / "ok").write_text("current")
    link = tmp_path / "processed" / "tensors.zarr"
    link.parent.mkdir()
    link.symlink_to(disk, target_is_directory=True)
    stale = _killed_write(link)
    assert stale.parent == disk.parent
    assert remove_stale_temporaries(link) == [stale] and _siblings(disk) == ["tensors.zarr"]
    disk.rename(disk.with_name(".tensors.zarr.old"))  # killed between the renames: the link dangles
    assert remove_stale_temporaries(link) == []
    assert _tree(link) == {"ok": "current"} and _siblings(disk) == ["tensors.zarr"] and link.is_symlink()
