"""Champion-challenger on real days: ``soilcast promote --auto``.

The daily run forecasts with ``stable`` and ``canary``; verification scores both against the
same observations. The canary's version replaces stable's when, over the init days on which
BOTH versions were verified at every lead (paired: same days, same weather), at least
``promotion.min_days`` of them, its realised MSE skill vs persistence (whole mask) beats
stable's by ``promotion.margin`` at the mean over leads AND trails it by no more than the
margin at any lead. Pairing by version, not label: a label moves, a version's forecasts do
not. Every decision, promoted or not, is one JSON line in the promotion log with the numbers
it rested on; the promotion itself goes through :func:`soilcast.serving.promotion.promote`
(the model repository's lock and checks).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from soilcast.serving.realised import ALL_BASINS


@dataclass(frozen=True)
class Decision:
    """One promotion decision and what it rested on."""

    promoted: bool
    reason: str
    stable: int | None
    canary: int | None
    days: int = 0  # paired init days verified at every lead
    skill: dict[str, dict[int, float]] = field(default_factory=dict)  # version -> lead -> skill vs persistence
    difference: dict[int, float] = field(default_factory=dict)  # lead -> canary - stable
    at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_skill(table: pd.DataFrame, stable: int, canary: int, leads: list[int]) -> tuple[int, pd.DataFrame]:
    """(paired init days, skill vs persistence [lead x version]) over the init days on which
    both versions were verified at every lead (whole-mask rows)."""
    rows = table[(table["basin"] == ALL_BASINS) & table["version"].isin([stable, canary])]
    rows = rows.drop_duplicates(["init_date", "version", "lead"])  # a version archived under both labels
    complete = rows.groupby(["init_date", "version"])["lead"].nunique() == len(leads)
    per_version = complete[complete].reset_index().groupby("init_date")["version"].nunique()
    days = per_version[per_version == 2].index
    if not len(days):
        return 0, pd.DataFrame()
    paired = rows[rows["init_date"].isin(days)]
    sums = paired.groupby(["lead", "version"])[["sse", "sse_persistence"]].sum()
    skill = (1 - sums["sse"] / sums["sse_persistence"]).unstack("version")
    return len(days), skill


def decide(cfg: Any, table: pd.DataFrame, labels: dict[str, int]) -> Decision:
    """Whether the canary earns stable (no side effects)."""
    stable, canary = labels.get("stable"), labels.get("canary")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    p = cfg.promotion
    if stable is None or canary is None or stable == canary:
        return Decision(False, f"nothing to decide: stable is version {stable}, canary version {canary}",
                        stable, canary, at=now)
    leads = [int(k) for k in cfg.window.leads]
    days, skill = paired_skill(table, stable, canary, leads)
    if days < p.min_days:
        return Decision(False, f"canary version {canary} and stable version {stable} were both verified at every "
                        f"lead on {days} init day(s); promotion.min_days is {p.min_days}", stable, canary, days, at=now)
    diff = {int(k): float(skill.loc[k, canary] - skill.loc[k, stable]) for k in skill.index}
    per_version = {str(v): {int(k): float(skill.loc[k, v]) for k in skill.index} for v in (stable, canary)}
    mean = sum(diff.values()) / len(diff)
    worst = min(diff, key=diff.get)
    common = dict(stable=stable, canary=canary, days=days, skill=per_version, difference=diff, at=now)
    if mean < p.margin:
        return Decision(False, f"canary version {canary}'s realised skill vs persistence beats stable version "
                        f"{stable}'s by {mean:+.3f} at the mean over leads over {days} paired day(s); "
                        f"promotion.margin is {p.margin}", **common)
    if diff[worst] < -p.margin:
        return Decision(False, f"canary version {canary} beats stable version {stable} by {mean:+.3f} at the mean "
                        f"over leads but trails it by {diff[worst]:+.3f} at lead {worst} d (more than "
                        f"promotion.margin {p.margin})", **common)
    return Decision(True, f"canary version {canary} beats stable version {stable} by {mean:+.3f} in realised skill "
                    f"vs persistence at the mean over leads over {days} paired day(s) (weakest lead {worst} d: "
                    f"{diff[worst]:+.3f}); stable -> version {canary}", **common)


def log_decision(path: Any, decision: Decision) -> None:
    """Append one JSON line (the caller holds the operations lock)."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(decision.to_dict(), sort_keys=True) + "\n")


def promote_auto(cfg: Any, layout: Any) -> Decision:
    """Decide on the verification table, promote the canary when it earned it, log the decision."""
    from soilcast.operations.archive import operations_lock
    from soilcast.operations.table import read_table
    from soilcast.repository.versions import current_labels
    from soilcast.serving.promotion import promote

    ops = layout.operations
    with operations_lock(ops.root):
        decision = decide(cfg, read_table(ops.verification), current_labels(layout.models_dir))
        if decision.promoted:
            promote(layout.models_dir, int(decision.canary), "stable", cfg.serving.model_name)
        log_decision(ops.promotion_log, decision)
    return decision
