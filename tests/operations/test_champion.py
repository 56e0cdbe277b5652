"""Champion-challenger on real days: promote the canary only when its realised skill earns it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from soilcast.layout import Layout
from soilcast.operations.champion import decide, promote_auto
from soilcast.operations.table import COLUMNS, write_table
from soilcast.testing.config import tiny_config

LEADS = [1, 2, 3, 4, 5, 6, 7]


def table(skills: dict[int, dict[int, float]], days: int, first: str = "2020-01-01") -> pd.DataFrame:
    """Whole-mask rows of each version at every lead for ``days`` init days, with the given
    MSE skill vs persistence (sse_persistence 1, sse = 1 - skill)."""
    rows = []
    for version, by_lead in skills.items():
        for d in pd.date_range(first, periods=days):
            for lead, skill in by_lead.items():
                rows.append({"forecast": 0, "init_date": str(d.date()), "label": "x", "version": version,
                             "lead": lead, "valid_date": str((d + pd.Timedelta(days=lead)).date()), "month": "",
                             "basin": "all", "weight": 1.0, "sse": 1.0 - skill, "sse_persistence": 1.0,
                             "sse_climatology": 2.0, "crps": float("nan"), "rmse": 0.0, "skill_persistence": skill,
                             "skill_climatology": 0.0, "obs_sha256": "h", "verified_at": ""})
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def cfg(tmp_path):
    return tiny_config(tmp_path, {"promotion": {"min_days": 5, "margin": 0.02}})


def flat(value: float, **at: float) -> dict[int, float]:
    return {k: at.get(f"lead{k}", value) for k in LEADS}


def test_a_better_canary_is_promoted(cfg):
    d = decide(cfg, table({1: flat(0.30), 2: flat(0.35)}, days=5), {"stable": 1, "canary": 2})
    assert d.promoted and d.days == 5 and d.difference[1] == pytest.approx(0.05)
    assert "stable -> version 2" in d.reason


@pytest.mark.parametrize("canary, days, why", [
    (flat(0.31), 5, "by \\+0.010 at the mean over leads .* promotion.margin is 0.02"),
    (flat(0.40, lead7=0.20), 5, "trails it by -0.100 at lead 7 d"),
    (flat(0.40), 4, "on 4 init day\\(s\\); promotion.min_days is 5"),
    (flat(-0.9), 30, "beats stable version 1's by -1.200"),  # the broken canary (shuffled targets)
])
def test_a_canary_that_does_not_earn_it_stays_and_the_reason_names_the_numbers(cfg, canary, days, why):
    d = decide(cfg, table({1: flat(0.30), 2: canary}, days=days), {"stable": 1, "canary": 2})
    assert not d.promoted
    assert pd.Series([d.reason]).str.contains(why).all(), d.reason


def test_only_days_both_versions_verified_at_every_lead_count(cfg):
    """A day the canary was not forecast (or a lead not verified yet) is not a paired day."""
    rows = table({1: flat(0.30), 2: flat(0.40)}, days=6)
    rows = rows[~((rows["version"] == 2) & (rows["init_date"] == "2020-01-06") & (rows["lead"] == 7))]
    d = decide(cfg, rows, {"stable": 1, "canary": 2})
    assert d.days == 5 and d.promoted


def test_nothing_to_decide_when_both_labels_name_one_version(cfg):
    d = decide(cfg, table({1: flat(0.3)}, days=9), {"stable": 1, "canary": 1})
    assert not d.promoted and "nothing to decide" in d.reason


def test_promote_auto_moves_stable_and_logs_every_decision(cfg):
    from soilcast.repository.labels import read_labels, write_labels
    from soilcast.testing.serving import publish

    lay = Layout.from_config(cfg)
    publish(cfg, 1)
    publish(cfg, 2)
    write_labels(lay.models_dir, {"stable": 1, "canary": 2}, cfg.serving.model_name)
    write_table(lay.operations.verification, table({1: flat(0.30), 2: flat(0.20)}, days=5))
    first = promote_auto(cfg, lay)
    assert not first.promoted and read_labels(lay.models_dir)["stable"] == 1
    write_table(lay.operations.verification, table({1: flat(0.30), 2: flat(0.40)}, days=5))
    second = promote_auto(cfg, lay)
    assert second.promoted and read_labels(lay.models_dir) == {"stable": 2, "canary": 2}
    log = [json.loads(line) for line in lay.operations.promotion_log.read_text().splitlines()]
    assert [e["promoted"] for e in log] == [False, True] and log[1]["difference"]["1"] == pytest.approx(0.1)
