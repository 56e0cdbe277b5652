"""The compact DVC metric: per model, its test RMSE and MSE skills (vs persistence, vs
climatology) per lead, in ``artifacts/eval/summary`` (``EvalDir.summary``).

Layout: one small file per metric and model, ``summary/<metric>/<model>.json``, holding
``{"lead_1": v, ..., "lead_7": v}`` (4 significant digits; ``null`` where a score is undefined).
``dvc metrics show`` prints one row per file and one column per key of the union of the
files, sorted by path, so it reads as three tables (rmse, skill_vs_climatology,
skill_vs_persistence) with one row per model and one column per lead. Measured with DVC 3.67
on the 21 models of a full demo (7 leads):

=============================================  ======  ==========
layout                                          rows    widest line
=============================================  ======  ==========
``metrics.json`` (everything, before)            1      1,568,022
one file, ``{model: {metric: {lead}}}``          1         14,607
one file per metric, ``{model: {lead}}``         3          2,601
one file per lead, ``{model: {metric}}``         7          1,988
one file per model, ``{metric: {lead}}``        21            482
one file per model and metric (this one)        63            ~140
=============================================  ======  ==========

The width is then the longest path plus seven value columns, whatever the number of models;
``dvc metrics diff`` prints one narrow row per changed value. Leads are zero-padded when a
lead reaches 10 (``lead_01``) because DVC sorts the columns by name.

``metrics.json`` (every score, every season and basin) stays the evaluate stage's full
record for gate and export; the DVC stage caches this folder (``cache: false`` outputs under the
git-ignored ``artifacts/`` are in neither git nor the DVC cache, so ``dvc metrics diff`` could
not load HEAD's). The Kubeflow evaluate step logs the same values (:func:`summary_values`).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from soilcast.records import Leaderboard

SUMMARY_METRICS = ("rmse", "skill_vs_persistence", "skill_vs_climatology")
DIGITS = 4  # significant digits: an RMSE of 0.005512 keeps what separates two networks


def _round(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.{DIGITS}g}")


def lead_key(lead: int | str, last: int) -> str:
    """``lead_3`` (``lead_03`` when the longest lead has two digits): DVC sorts columns by name."""
    return f"lead_{int(lead):0{len(str(last))}d}"


def summary_files(metrics: Leaderboard) -> dict[str, dict[str, float | None]]:
    """``<metric>/<model>.json`` -> ``{lead_k: value}`` for every scored model (test years)."""
    files: dict[str, dict[str, float | None]] = {}
    for name, entry in metrics.scored().items():
        leads = sorted(entry.overall, key=int)
        last = int(leads[-1]) if leads else 0
        for metric in SUMMARY_METRICS:
            files[f"{metric}/{name}.json"] = {
                lead_key(k, last): _round(entry.overall[k].get(metric)) for k in leads}
    return files


def summary_values(metrics: Leaderboard) -> dict[str, float]:
    """The summary as flat ``<model>.<metric>.lead_k`` scalars (undefined ones left out), for
    a pipeline's metrics output."""
    out: dict[str, float] = {}
    for rel, body in summary_files(metrics).items():
        metric, model = rel.removesuffix(".json").split("/", 1)
        out.update({f"{model}.{metric}.{k}": v for k, v in body.items() if v is not None})
    return out


def write_summary(metrics: Leaderboard, out: Path) -> None:
    """Replace the folder ``out`` by the summary files (written beside it, then renamed in)."""
    from soilcast.io.atomic import atomic_write_text

    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    for rel, body in summary_files(metrics).items():
        path = staging / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(body, indent=1) + "\n")
    staging.mkdir(parents=True, exist_ok=True)  # no scored model: an empty summary
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
