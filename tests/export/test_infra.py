"""Infra validation's temp folders: named after the exporting process, so the next export
removes those killed exports left (their process is gone) and never a live export's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from soilcast.export import infra


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_folders_of_dead_exports_go_live_and_unknown_ones_stay(tmp_path):
    dead = tmp_path / f"soilcast-infra-{dead_pid()}-ab12cd34"
    (dead / "inputs.npz").parent.mkdir()
    (dead / "inputs.npz").write_bytes(b"canaries of a killed export")
    live = tmp_path / f"soilcast-infra-{os.getpid()}-ef56gh78"
    live.mkdir()
    keep = [live, tmp_path / "soilcast-infra-ab12cd34",  # made before the pid was in the name
            tmp_path / f"soilcast-infra-{dead_pid()}", tmp_path / f"other-{dead_pid()}-ab12cd34"]
    for path in keep[1:]:
        path.mkdir()
    a_file = tmp_path / f"soilcast-infra-{dead_pid()}-xyz"
    a_file.write_text("not a folder of ours")
    assert infra.remove_dead_temporaries(tmp_path) == [dead]
    assert not dead.exists() and all(p.is_dir() for p in keep) and a_file.is_file()
    assert infra.remove_dead_temporaries(tmp_path / "absent") == []


def test_the_fresh_process_folder_carries_the_exporting_pid(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    def fresh_process(cmd, **kwargs):  # the child's work, without TensorFlow
        req, resp = Path(cmd[-2]), Path(cmd[-1])
        seen.append(req.parent.name)
        assert infra.remove_dead_temporaries() == []  # a sweep meanwhile leaves a live export's
        np.savez(resp, report=np.array(json.dumps({"metadata_ok": True})), soil_moisture=np.zeros(2))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(infra.subprocess, "run", fresh_process)
    out = infra.run_in_fresh_process(tmp_path / "staged", {"meteo": np.zeros(3, np.float32)})
    assert out["report"] == {"metadata_ok": True} and out["soil_moisture"].shape == (2,)
    assert len(seen) == 1 and seen[0].startswith(f"soilcast-infra-{os.getpid()}-")
    assert list(tmp_path.iterdir()) == []
