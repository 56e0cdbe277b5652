"""The "How sure" leaderboard section and figures, from a hand-built leaderboard: ranking by
CRPS skill against the best probabilistic reference (chosen on VALIDATION), the GloFAS
headline lead, nothing for point-only metrics, and the PNGs written."""

from __future__ import annotations

import copy

import pytest

from soilcast.evaluation.uncertainty import (
    best_probabilistic_references,
    crps_skill_vs,
    crps_skill_vs_best,
    headline,
    plot_calibration,
    plot_crps_skill_vs_lead,
    uncertainty_table,
    write_uncertainty_plots,
)
from soilcast.records import Leaderboard

REFS = ("clim_distribution", "persistence_increments")
LEVELS = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
# test and validation CRPS by lead 1..3. Validation picks persistence_increments at lead 1
# and clim_distribution at leads 2 and 3; on the test years persistence_increments would win
# lead 2, so a table that chose on test would differ.
TEST = {"net_a": [0.008, 0.012, 0.020], "net_b": [0.006, 0.010, 0.014],
        "clim_distribution": [0.030, 0.030, 0.030], "persistence_increments": [0.010, 0.020, 0.040],
        "persistence": [0.012, 0.025, 0.045]}
VAL = {"clim_distribution": [0.030, 0.030, 0.030], "persistence_increments": [0.010, 0.035, 0.040]}
PROBABILISTIC = {"net_a", "clim_distribution", "persistence_increments"}
NETWORKS = {"net_a", "net_b"}
PNG = b"\x89PNG\r\n\x1a\n"


def calibration() -> dict:
    pit = [0.14, 0.11, 0.1, 0.09, 0.08, 0.08, 0.09, 0.1, 0.1, 0.11]
    rel = {"forecast": [0.02, 0.15, 0.25, None, 0.45, 0.55, None, 0.75, 0.85, 0.97],
           "observed": [0.01, 0.1, 0.3, None, 0.4, 0.6, None, 0.7, 0.9, 0.95],
           "count": [500.0, 80.0, 40.0, 0.0, 20.0, 15.0, 0.0, 10.0, 12.0, 60.0]}
    return {str(k): {"pit": pit, "reliability": rel} for k in (1, 2, 3)}


def block(name: str, crps: float, lead: int, probabilistic: bool) -> dict:
    out = {"rmse": 1.3 * crps, "mse": (1.3 * crps) ** 2, "crps": crps, "brier_d1": 0.1 + 0.01 * lead,
           "brier_skill_d1": 0.5 - 0.1 * lead}
    if probabilistic:
        out.update(coverage_50=0.48, coverage_80=0.78 - 0.01 * lead, coverage_90=0.88, spread_error_ratio=0.9)
    for ref in REFS:  # as evaluation's add_probabilistic_skills writes them
        out[f"crps_skill_vs_{ref}"] = 1.0 - crps / TEST[ref][lead - 1]
    return out


def entry(name: str) -> dict:
    prob = name in PROBABILISTIC
    by_lead = {str(k): block(name, TEST[name][k - 1], k, prob) for k in (1, 2, 3)}
    val = {str(k): {"rmse": 0.04, "mse": 0.0016, "crps": VAL[name][k - 1]} for k in (1, 2, 3)} if name in VAL else None
    out = {"status": "ok", "kind": "network" if name in NETWORKS else "reference", "n_windows": 300,
           "leads": [1, 2, 3], "init_period": ["2013-01-07", "2013-12-29"], "overall": by_lead,
           "seasons": {"monsoon_jjas": by_lead, "rest": by_lead}, "basins": {"West": by_lead}, "val": val,
           "levels": LEVELS if prob else []}
    if prob:
        out["calibration"] = calibration()
    return out


def entries() -> dict:
    # net_a first in the file: the table must reorder by skill, not keep file order
    return {n: entry(n) for n in ("net_a", "net_b", "clim_distribution", "persistence_increments", "persistence")} | {
        "gru": {"status": "skipped", "reason": "not trained"}}


@pytest.fixture
def metrics() -> Leaderboard:
    return Leaderboard.from_json(entries(), "test")


def section(lines: list[str], title: str) -> list[list[str]]:
    """The table rows (cells) under the heading ``title``."""
    start = lines.index(title)
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows[1:]  # without the header


def test_best_reference_is_chosen_on_validation(metrics):
    best = best_probabilistic_references(metrics, REFS)
    assert best == {"1": "persistence_increments", "2": "clim_distribution", "3": "clim_distribution"}
    skill = crps_skill_vs_best(metrics, "net_a", best)
    assert skill["1"] == pytest.approx(1 - 0.008 / 0.010)
    assert skill["2"] == pytest.approx(1 - 0.012 / 0.030)  # vs clim_distribution, not the test-best 0.020
    assert skill["3"] == pytest.approx(1 - 0.020 / 0.030)


def test_table_ranks_networks_then_references_by_skill(metrics):
    lines = uncertainty_table(metrics, REFS)
    assert lines[0] == "" and lines[1] == "## How sure: probabilistic scores by lead (test years)"
    text = "\n".join(lines)
    assert "lead 1: persistence_increments, lead 2: clim_distribution, lead 3: clim_distribution" in text
    rows = section(lines, "### CRPS skill vs the best probabilistic reference")
    # net_b: mean(0.4, 0.667, 0.533) > net_a: mean(0.2, 0.6, 0.333); references after, by the same mean
    assert [r[1] for r in rows] == ["net_b", "net_a", "persistence_increments", "persistence", "clim_distribution"]
    assert [r[0] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[1][2] == "network" and rows[2][2] == "reference"
    net_a = rows[1][3:]
    assert net_a == [f"{1 - 0.008 / 0.010:.4f}", f"{1 - 0.012 / 0.030:.4f}", f"{1 - 0.020 / 0.030:.4f}",
                     f"{((1 - 0.008 / 0.010) + (1 - 0.012 / 0.030) + (1 - 0.020 / 0.030)) / 3:.4f}"]
    assert "| gru |" not in text  # skipped models have no scores


def test_table_per_reference_calibration_and_brier(metrics):
    lines = uncertainty_table(metrics, REFS)
    per_ref = section(lines, "### CRPS skill vs each probabilistic reference")
    assert [r[:2] for r in per_ref[:2]] == [["net_b", "clim_distribution"], ["", "persistence_increments"]]
    assert per_ref[0][2] == f"{1 - 0.006 / 0.030:.4f}"
    calib = section(lines, "### Calibration: 80% interval coverage (nominal 0.80) and spread-error ratio (ideal 1)")
    # only the probabilistic models, in table order; the point network and persistence are left out
    assert [r[0] for r in calib] == ["net_a", "", "persistence_increments", "", "clim_distribution", ""]
    assert calib[0][2:5] == ["0.7700", "0.7600", "0.7500"] and calib[1][1] == "spread/error"
    brier = section(lines, "### Brier skill of D1 or worse vs clim_distribution")
    assert [r[0] for r in brier][:2] == ["net_b", "net_a"] and brier[0][1] == "0.4000"


def test_skill_falls_back_on_crps_when_not_stored():
    data = entries()
    for e in data.values():
        for b in e.get("overall", {}).values():
            for ref in REFS:
                b.pop(f"crps_skill_vs_{ref}")
    bare, full = Leaderboard.from_json(data, "test"), Leaderboard.from_json(entries(), "test")
    assert crps_skill_vs(bare, "net_a", "clim_distribution") == pytest.approx(
        crps_skill_vs(full, "net_a", "clim_distribution"))
    assert uncertainty_table(bare, REFS) == uncertainty_table(full, REFS)


def test_headline_is_the_longest_lead_above_one_half(metrics):
    # net_a vs clim_distribution: 0.733, 0.6, 0.333; net_b: 0.8, 0.667, 0.533
    assert headline(metrics, "net_a") == 2
    assert headline(metrics, "net_b") == 3
    assert headline(metrics, "persistence") == 1  # a point forecast too: 0.6, 0.167, -0.5
    text = "\n".join(uncertainty_table(metrics, REFS))
    assert "- net_a: lead 2 d" in text and "- net_b: lead 3 d" in text
    assert headline(metrics, "missing") is None


def test_headline_hand_cases():
    data = entries()
    skills = {"net_a": [0.6, 0.4, 0.55], "net_b": [0.5, 0.3, 0.1]}  # not monotonic; exactly 0.5 is not above
    for name, vals in skills.items():
        for k, v in zip((1, 2, 3), vals):
            data[name]["overall"][str(k)]["crps_skill_vs_clim_distribution"] = v
    metrics = Leaderboard.from_json(data, "test")
    assert headline(metrics, "net_a") == 3
    assert headline(metrics, "net_b") is None
    assert "- net_b: no lead (skill <= 0.5 at every lead)" in "\n".join(uncertainty_table(metrics, REFS))
    del data["clim_distribution"]
    assert headline(Leaderboard.from_json(data, "test"), "net_a") is None


def test_no_table_for_point_only_metrics():
    data = entries()
    for e in data.values():
        for b in e.get("overall", {}).values():
            for key in [k for k in b if k not in ("rmse", "mse")]:
                b.pop(key)
    assert uncertainty_table(Leaderboard.from_json(data, "test"), REFS) == []
    assert uncertainty_table(Leaderboard.from_json({"gru": data["gru"]}, "test"), REFS) == []


def test_default_references_are_the_registry_s(metrics):
    assert uncertainty_table(metrics) == uncertainty_table(metrics, REFS)


def _png(path):
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_figures_are_written(metrics, tmp_path):
    written = write_uncertainty_plots(metrics, tmp_path / "plots", REFS)
    names = {p.name for p in written}
    assert names == {"pit_histogram.png", "reliability_d1.png", "crps_skill_vs_lead.png"}
    assert all(_png(p) for p in written)
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(names)


def test_calibration_for_named_models_only(metrics, tmp_path):
    written = plot_calibration(metrics, tmp_path, names=["clim_distribution"], references=REFS)
    assert [p.name for p in written] == ["pit_histogram.png", "reliability_d1.png"]
    assert all(_png(p) for p in written)
    assert plot_crps_skill_vs_lead(metrics, tmp_path / "s", REFS) == tmp_path / "s" / "crps_skill_vs_lead.png"


def test_no_figures_without_a_probabilistic_model(tmp_path):
    data = copy.deepcopy(entries())
    for e in data.values():
        if e["status"] == "ok":
            e["levels"] = []
            e.pop("calibration", None)
    assert write_uncertainty_plots(Leaderboard.from_json(data, "test"), tmp_path / "plots", REFS) == []
    assert not (tmp_path / "plots").exists()
    assert plot_calibration(Leaderboard.from_json(data, "test"), tmp_path / "c", references=REFS) == []
    assert not (tmp_path / "c").exists()
