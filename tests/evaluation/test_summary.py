"""The compact DVC metric, and DVC's own views of this project (the real dvc, no mocks):
`dvc metrics show` stays narrow, `dvc metrics diff` loads HEAD's, `dvc plots show` needs no
network."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import yaml

from soilcast.config import read_params
from soilcast.evaluation.summary import SUMMARY_METRICS, lead_key, summary_files, summary_values, write_summary
from soilcast.records import Leaderboard
from tests.conftest import PARAMS, REPO

# the model names of a full demo: 5 networks x 3 weather feeds and 6 references
NETWORKS = ("convlstm", "lstm", "gru", "fc", "cnn_td")
MODELS = (*NETWORKS, *(f"{n}+{f}" for n in NETWORKS for f in ("forecast", "perfect")), "persistence",
          "persistence_increments", "damped_persistence", "climatology", "clim_distribution", "linear")


def _leaderboard(models=MODELS, leads=range(1, 8), shift: float = 0.0) -> Leaderboard:
    def block(i: int, lead: int) -> dict:
        rmse = 0.005 + 0.0011 * lead + 0.00037 * i + shift
        return {"rmse": rmse, "mse": rmse**2, "skill_vs_persistence": 0.8 - 0.0123456 * i,
                "skill_vs_climatology": None if i == 0 else -11.038271 + i, "n": 9}

    entries: dict = {
        name: {"status": "ok", "kind": "network", "n_windows": 9, "leads": list(leads),
               "init_period": ["2018-01-01", "2019-12-24"], "seasons": {}, "basins": {}, "val": None,
               "overall": {str(k): block(i, k) for k in leads}}
        for i, name in enumerate(models)}
    entries["untrained"] = {"status": "skipped", "reason": "no training run"}
    return Leaderboard.from_json(entries)


def test_one_file_per_metric_and_model_with_one_value_per_lead():
    files = summary_files(_leaderboard(("convlstm", "persistence"), leads=(1, 2, 3)))
    assert sorted(files) == sorted(f"{m}/{n}.json" for m in SUMMARY_METRICS for n in ("convlstm", "persistence"))
    assert files["rmse/convlstm.json"] == {"lead_1": 0.0061, "lead_2": 0.0072, "lead_3": 0.0083}
    # 4 significant digits; an undefined score stays null (DVC shows "-")
    assert files["rmse/persistence.json"]["lead_1"] == 0.00647
    assert files["skill_vs_persistence/persistence.json"]["lead_2"] == 0.7877
    assert files["skill_vs_climatology/convlstm.json"] == {"lead_1": None, "lead_2": None, "lead_3": None}
    assert files["skill_vs_climatology/persistence.json"]["lead_1"] == -10.04


def test_leads_zero_padded_when_they_reach_two_digits():
    """DVC sorts columns by name: lead_10 must not come between lead_1 and lead_2."""
    assert [lead_key(k, 7) for k in (1, 7)] == ["lead_1", "lead_7"]
    assert [lead_key(k, 14) for k in (1, 14)] == ["lead_01", "lead_14"]
    files = summary_files(_leaderboard(("fc",), leads=(1, 2, 10)))
    assert list(files["rmse/fc.json"]) == ["lead_01", "lead_02", "lead_10"]


def test_write_replaces_the_folder_and_values_are_flat_for_the_pipeline(tmp_path):
    out = tmp_path / "summary"
    (out / "rmse").mkdir(parents=True)
    (out / "rmse" / "gone.json").write_text("{}")  # a model no longer scored
    write_summary(_leaderboard(("fc", "linear")), out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json")) == sorted(
        f"{m}/{n}.json" for m in SUMMARY_METRICS for n in ("fc", "linear"))
    assert json.loads((out / "rmse" / "fc.json").read_text())["lead_7"] == 0.0127
    assert not out.with_name("summary.tmp").exists()
    values = summary_values(_leaderboard(("fc", "linear")))
    assert values["fc.rmse.lead_7"] == 0.0127 and "fc.skill_vs_climatology.lead_1" not in values  # null left out
    assert len(values) == 2 * 3 * 7 - 7


# --------------------------------------------------------------------------- the real dvc


def _dvc() -> str:
    beside = Path(sys.executable).parent / "dvc"  # installed with the project, in its venv
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    assert found, "the dvc executable must be installed (it is in requirements.lock)"
    return found


def _png() -> bytes:
    """A valid 1x1 grey PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x80")) + chunk(b"IEND", b""))


def _resolve(path: str, raw: dict, item: str | None = None) -> str:
    def value(m: re.Match) -> str:
        if m.group(1) == "item":
            return str(item)
        node = raw
        for part in m.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([\w.]+)\}", value, path)


def _declared(body: dict, key: str) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in body.get(key, [])]


def _stage_files(root: Path, body: dict, raw: dict, item: str | None, metrics: Leaderboard) -> None:
    """Files where the stage's outs, metrics and plots are declared, small but of their kind."""
    for key in ("outs", "metrics", "plots"):
        for declared in _declared(body, key):
            path = root / _resolve(declared, raw, item)
            if key == "metrics":
                write_summary(metrics, path)
            elif path.suffix == ".png":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(_png())
            elif path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text("epoch,val_forecast_mse\n1,0.5\n" if path.suffix == ".csv" else "{}\n")
            else:  # a folder: pictures for a plots folder, one file otherwise
                path.mkdir(parents=True, exist_ok=True)
                for name in (("skill_vs_lead.png", "scorecard.png") if key == "plots" else ("state.json",)):
                    (path / name).write_bytes(_png() if key == "plots" else b"{}")


def test_dvc_views_of_the_real_declarations_are_narrow_loadable_and_offline(tmp_path):
    """The train and evaluate stages of the real dvc.yaml, their outs/metrics/plots as they are
    declared, each cmd a copy of small staged files: what a user sees after `dvc repro`."""
    raw = read_params(PARAMS)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    staged = tmp_path / "staged"
    tiny: dict = {}
    for name in ("train", "evaluate"):
        body = dict(stages[name]["do"] if "foreach" in stages[name] else stages[name])
        root = "${paths.artifacts_dir}/" + ("train/${item}" if name == "train" else "eval")
        body["cmd"] = f"mkdir -p {root} && cp -R staged/{root}/. {root}/"
        body["deps"] = [f"staged/{root}"]
        body.pop("params", None)
        for item in (raw["training"]["models"] if name == "train" else [None]):
            _stage_files(staged, body, raw, item, _leaderboard())
        tiny[name] = {"foreach": stages[name]["foreach"], "do": body} if name == "train" else body
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": tiny}, sort_keys=False))
    shutil.copy(PARAMS, tmp_path / "params.yaml")
    (tmp_path / ".gitignore").write_text((REPO / ".gitignore").read_text())  # artifacts/ git-ignored
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    run("git", "init", "-q")
    run(_dvc(), "init", "-q")
    run(_dvc(), "repro", "-q")
    shown = run(_dvc(), "metrics", "show").stdout.splitlines()
    # a header and one row per metric and model (21 models x 3), a column per lead
    assert len(shown) == 1 + len(MODELS) * len(SUMMARY_METRICS), shown[:5]
    assert shown[0].split() == ["Path", *(f"lead_{k}" for k in range(1, 8))]
    assert max(map(len, shown)) <= 160, max(shown, key=len)
    assert any(line.startswith("artifacts/eval/summary/skill_vs_persistence/convlstm+forecast.json") for line in shown)

    # HEAD's metric loads (from the DVC cache: artifacts/ is not in git)
    run("git", "add", ".gitignore", ".dvc", "dvc.yaml", "dvc.lock", "params.yaml")
    run("git", "commit", "-qm", "one run")
    write_summary(_leaderboard(shift=0.001), staged / "artifacts/eval/summary")
    run(_dvc(), "repro", "-q", "evaluate")
    diff = run(_dvc(), "metrics", "diff")
    assert "failed to load" not in diff.stdout + diff.stderr, diff.stdout + diff.stderr
    rows = diff.stdout.splitlines()
    assert rows[0].split() == ["Path", "Metric", "HEAD", "workspace", "Change"]
    assert ["artifacts/eval/summary/rmse/convlstm.json", "lead_1", "0.0061", "0.0071", "0.001"] in [r.split() for r in rows]
    assert max(map(len, rows)) <= 160

    # the plots page: pictures only, nothing fetched from the network
    run(_dvc(), "plots", "show", "-o", "page")
    html = (tmp_path / "page" / "index.html").read_text()
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert links and not [u for u in links if re.match(r"(?i)(https?:)?//", u)], links
    assert "<script" not in html.lower() and "cdn" not in html.lower()
    pictures = 2 + len(raw["training"]["models"])  # the evaluate plots folder and each learning curve
    assert html.count("<img") == len(links) == pictures
    assert all((tmp_path / "page" / u).is_file() for u in links)
