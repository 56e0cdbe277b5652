"""The compact DVC metric: per model, its test RMSE and MSE skills per lead (placeholder
layout; see :func:`write_summary`)."""

from __future__ import annotations

import json
from pathlib import Path

from soilcast.records import Leaderboard

SUMMARY_METRICS = ("rmse", "skill_vs_persistence", "skill_vs_climatology")


def write_summary(metrics: Leaderboard, out: Path) -> None:
    """One JSON file per scored model in ``out``: ``{metric: {lead: value}}`` on the test years."""
    import shutil

    from soilcast.io.atomic import atomic_write_text

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in metrics.scored().items():
        body = {m: {k: entry.overall[k].get(m) for k in entry.overall} for m in SUMMARY_METRICS}
        atomic_write_text(out / f"{name}.json", json.dumps(body, indent=1) + "\n")
