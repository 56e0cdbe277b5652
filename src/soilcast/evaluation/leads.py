"""The lead axis of scores: keys, the best reference at each lead, and skill against it.

At a one-day lead persistence is the forecast to beat; by a week it is no better than
climatology, and damped anomaly persistence beats both in between. So no single reference
is "the" benchmark across leads: at each lead the BEST of the benchmark references
(:func:`soilcast.ml.models.references.benchmark_names`) is chosen on the validation years
(lowest MSE there), and a model's skill at that lead is ``1 - MSE / MSE_best``. Selection
and the gate use validation; the same choice scores the test years for reporting.

Light on purpose (records only): the gate and the CLI use it without TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from soilcast.records import ByLead, Leaderboard


def lead_key(lead: int) -> str:
    """How a lead is keyed in the JSON records (JSON object keys are strings)."""
    return str(int(lead))


def lowest_mse(blocks: Mapping[str, ByLead]) -> dict[str, str]:
    """Per lead key: the name whose block has the lowest finite MSE there (ties by name)."""
    keys = dict.fromkeys(k for by_lead in blocks.values() for k in by_lead)
    out: dict[str, str] = {}
    for key in keys:
        scores = {n: by_lead.get(key, {}).get("mse") for n, by_lead in blocks.items()}
        finite = {n: float(v) for n, v in scores.items() if v is not None and math.isfinite(v)}
        if finite:
            out[key] = min(finite, key=lambda n: (finite[n], n))
    return out


def best_references(metrics: Leaderboard, benchmarks: Iterable[str]) -> dict[str, str]:
    """Per lead key: the benchmark reference with the lowest VALIDATION MSE (ties by name)."""
    return lowest_mse({n: metrics.val_of(n) for n in benchmarks if n in metrics.scored()})


def skill_against(blocks: ByLead, reference: ByLead) -> dict[str, float | None]:
    """Per lead key: ``1 - MSE / MSE_ref`` of ``blocks`` against ``reference`` (None where
    either is missing or the reference is perfect)."""
    out: dict[str, float | None] = {}
    for key, block in blocks.items():
        mse, ref = block.get("mse"), reference.get(key, {}).get("mse")
        ok = mse is not None and ref is not None and math.isfinite(mse) and math.isfinite(ref) and ref > 0
        out[key] = 1.0 - mse / ref if ok else None
    return out


def skill_vs_best(metrics: Leaderboard, name: str, best: Mapping[str, str], split: str = "val") -> dict[str, float | None]:
    """Per lead key: MSE skill of ``name`` against the best reference at that lead, on the
    validation (``val``) or test (``test``) years."""
    of = metrics.val_of if split == "val" else metrics.overall_of
    mine = of(name)
    out: dict[str, float | None] = {}
    for key, ref_name in best.items():
        out[key] = skill_against({key: mine.get(key, {})}, {key: of(ref_name).get(key, {})})[key]
    return out


def mean_over_leads(values: Mapping[str, float | None]) -> float | None:
    """Mean of the per-lead values, None when any lead is missing (a model must cover all)."""
    vals = list(values.values())
    if not vals or any(v is None or not math.isfinite(v) for v in vals):
        return None
    return sum(vals) / len(vals)  # type: ignore[arg-type]
