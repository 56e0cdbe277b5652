"""Promotion gate: bless the best trained network only if it is worth serving at EVERY lead.

Selection and checks are on the VALIDATION years (model selection never looks at the test
years; their scores are recorded for reporting). At each lead the best benchmark reference
(the best of persistence, climatology and damped persistence there, by validation MSE:
:mod:`soilcast.evaluation.leads`) is the forecast to beat:

1. winner: the network with the highest mean over leads of its MSE skill against the best
   reference at each lead. A network trained with the lead days' weather competes twice, as
   it can be served: without a forecast (``convlstm``) and with the forecast archive's runs
   (``convlstm+forecast``); its perfect-weather scores (``+perfect``) are an upper bound that
   no forecast reaches and never compete (``contract.SERVABLE_FEEDS``). The decision names the
   network to export and the feed (``served_feed``) its scores were earned with;
2. value: that skill must reach ``cfg.gate.min_skill_vs_best_reference`` at EVERY lead (a
   forecast that loses to a free reference at some lead misleads an operator planning on
   it); the weakest lead is named in the reasons either way;
3. change: when a champion is served (the version labelled ``stable``, else the newest), it
   is re-scored on the same validation windows at the leads it forecasts, and the winner's
   mean primary metric over those leads may be worse by at most ``cfg.gate.max_regression``
   (relative). A champion that cannot be re-scored (files broken, or a grid that no longer
   matches the data) blocks the promotion: fail closed, with the reason. A champion trained
   on other input variables than params' cannot be compared at all: the decision records
   that, and the value threshold alone decides.

4. calibration (a probabilistic winner: quantiles beyond the median): its validation CRPS
   skill against the best PROBABILISTIC reference at each lead (the climatological
   distribution or persistence plus climatological increments, whichever has the lower
   validation CRPS there) must reach ``cfg.gate.min_crps_skill_vs_best_reference`` at EVERY
   lead, and the validation coverage of its central ``cfg.gate.coverage_interval`` interval
   must lie within ``cfg.gate.coverage_tolerance`` of nominal at every lead: a spread that is
   too narrow makes every probability overconfident, one too wide makes them useless. Each
   failing lead is named.

The linear reference's skill is recorded beside the winner's (``beats_linear``: at every
lead), so the decision shows whether the network earns its compute. The decision is written
to the blessing file (``Layout.blessing``); the export stage reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soilcast.config import Config
from soilcast.contract import SERVABLE_FEEDS, network_and_feed
from soilcast.evaluation.leads import best_references, mean_over_leads, skill_vs_best
from soilcast.records import ByLead, Decision, Leaderboard

ChampionScorer = Callable[[Config, Path], ByLead]
LINEAR = "linear"


def pick_winner(metrics: Leaderboard, best: Mapping[str, str]) -> tuple[str | None, dict[str, float]]:
    """The network with the highest mean over leads of its VALIDATION skill against the best
    reference; networks are the entries evaluation marks ``kind: network``."""
    scores: dict[str, float] = {}
    for name, entry in metrics.scored().items():
        if entry.kind != "network" or entry.feed not in SERVABLE_FEEDS:
            continue
        value = mean_over_leads(skill_vs_best(metrics, name, best, "val"))
        if value is not None and math.isfinite(value):
            scores[name] = float(value)
    if not scores:
        return None, scores
    return max(scores, key=lambda n: (scores[n], n)), scores


@dataclass(frozen=True)
class Calibration:
    """The calibration rule (``gate`` section) and the probabilistic references to beat."""

    min_crps_skill: float
    interval: float
    tolerance: float
    references: tuple[str, ...]

    @classmethod
    def of(cls, cfg: Config) -> "Calibration":
        from soilcast.ml.models.references import probabilistic_benchmark_names

        g = cfg.gate
        return cls(g.min_crps_skill_vs_best_reference, g.coverage_interval, g.coverage_tolerance,
                   probabilistic_benchmark_names())


def decide(
    metrics: Leaderboard,
    primary: str,
    min_skill: float,
    max_regression: float,
    champion: Mapping[str, Any] | None,
    benchmarks: Iterable[str],
    calibration: Calibration | None = None,
) -> Decision:
    """Pure decision from the evaluation metrics and the champion's re-scored numbers.

    ``champion`` is None (nothing served) or ``{"version", "model", "by_lead": {lead key:
    block}}`` or ``{"version", "error": message}`` when it could not be re-scored.
    ``benchmarks``: the reference names the best reference at each lead is chosen from.
    """
    leads = metrics.leads()
    best = best_references(metrics, benchmarks)
    winner, scores = pick_winner(metrics, best)
    out: dict[str, Any] = {
        "primary_metric": primary,
        "selected_on": "validation",
        "leads": leads,
        "best_reference": best,
        "candidates": scores,
        "winner": winner,
        "thresholds": {"min_skill_vs_best_reference": min_skill, "max_regression": max_regression},
        "champion": dict(champion) if champion else None,
        "reasons": [],
    }
    if winner is None:
        out.update(blessed=False, reasons=["no trained network has a finite validation skill at every lead"])
        return Decision.from_json(out, "gate decision")
    skill = skill_vs_best(metrics, winner, best, "val")
    out["network"], out["served_feed"] = network_and_feed(winner)
    out["winner_score"] = scores[winner]
    out["skill_vs_best_reference"] = skill
    out["validation"] = metrics.val_of(winner)
    out["test"] = metrics.overall_of(winner)
    out["test_skill_vs_best_reference"] = skill_vs_best(metrics, winner, best, "test")
    value_ok = _every_lead(out, winner, skill, best, min_skill)
    calibrated = _calibrated(out, metrics, winner, calibration)
    _linear(out, metrics, winner, best)
    change_ok = _change_check(out, winner, metrics.val_of(winner), primary, max_regression, champion)
    out["blessed"] = bool(value_ok and calibrated and change_ok)
    return Decision.from_json(out, "gate decision")


def _every_lead(out: dict[str, Any], winner: str, skill: Mapping[str, float | None], best: Mapping[str, str],
                required: float) -> bool:
    """Value check at every lead; records the weakest lead and each failing one."""
    value = {k: (v if v is not None and math.isfinite(v) else -math.inf) for k, v in skill.items()}
    weakest = min(value, key=lambda k: (value[k], int(k)))
    out["weakest_lead"] = int(weakest)
    failing = [k for k, v in value.items() if not v >= required]
    out["reasons"].append(
        f"{winner}: weakest lead {weakest} day(s), validation skill {_fmt(skill[weakest])} vs the best reference "
        f"there ({best[weakest]}) {'is below' if failing else '>='} required {required}")
    for k in failing:
        if k != weakest:
            out["reasons"].append(f"{winner}: lead {k} day(s) skill {_fmt(skill[k])} vs {best[k]} is below required {required}")
    return not failing


def _calibrated(out: dict[str, Any], metrics: Leaderboard, winner: str, rule: Calibration | None) -> bool:
    """The calibration check (4. in the module docstring); True for a point forecast."""
    entry = metrics.scored()[winner]
    if rule is None or len(entry.levels) <= 1:
        out["reasons"].append(f"{winner}: a point forecast (no quantiles): no calibration check")
        return True
    val = metrics.val_of(winner)
    refs = {n: metrics.val_of(n) for n in rule.references if n in metrics.scored()}
    best = {k: min(refs, key=lambda n: (_crps(refs[n], k), n)) for k in val} if refs else {}
    skill = {k: _skill(_crps(val, k), _crps(refs[best[k]], k)) if k in best else None for k in val}
    key = f"coverage_{round(rule.interval * 100)}"
    coverage = {k: val[k].get(key) for k in val}
    out.update(best_probabilistic_reference=best, crps_skill_vs_best_probabilistic_reference=skill,
               coverage={"interval": rule.interval, "validation": coverage})
    out["thresholds"].update(min_crps_skill_vs_best_reference=rule.min_crps_skill,
                             coverage_interval=rule.interval, coverage_tolerance=rule.tolerance)
    ok = True
    for k in sorted(val, key=int):
        s, c = skill.get(k), coverage.get(k)
        if s is None or not s >= rule.min_crps_skill:
            ok = False
            out["reasons"].append(f"{winner}: lead {k} day(s) validation CRPS skill {_fmt(s)} vs the best probabilistic "
                                  f"reference there ({best.get(k, 'none')}) is below required {rule.min_crps_skill}")
        if c is None or abs(c - rule.interval) > rule.tolerance:
            ok = False
            out["reasons"].append(f"{winner}: lead {k} day(s) validation coverage of the {rule.interval:.0%} interval "
                                  f"{_fmt(c)} lies outside {rule.interval} +/- {rule.tolerance}")
    if ok:
        out["reasons"].append(
            f"{winner}: calibrated at every lead (CRPS skill vs the best probabilistic reference >= "
            f"{rule.min_crps_skill}, {rule.interval:.0%} interval coverage within +/- {rule.tolerance})")
    return ok


def _crps(by_lead: ByLead, key: str) -> float:
    v = by_lead.get(key, {}).get("crps")
    return float(v) if v is not None and math.isfinite(v) else math.inf


def _skill(score: float, ref: float) -> float | None:
    return 1.0 - score / ref if math.isfinite(score) and math.isfinite(ref) and ref > 0 else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _linear(out: dict[str, Any], metrics: Leaderboard, winner: str, best: Mapping[str, str]) -> None:
    linear = skill_vs_best(metrics, LINEAR, best, "val") if LINEAR in metrics.scored() else {}
    out["linear_reference"] = {"skill_vs_best_reference": linear or None}
    mine = out["skill_vs_best_reference"]
    if not linear or any(v is None for v in linear.values()):
        out["beats_linear"] = None
        return
    out["beats_linear"] = all(mine.get(k) is not None and mine[k] > v for k, v in linear.items())


def _change_check(out: dict[str, Any], winner: str, val: ByLead, primary: str,
                  max_regression: float, champion: Mapping[str, Any] | None) -> bool:
    if champion is None:
        out["reasons"].append("no served champion: the value thresholds alone decide")
        return True
    if "incomparable" in champion:
        out["reasons"].append(
            f"champion version {champion.get('version')} ({champion.get('model')}) cannot be compared: "
            f"{champion['incomparable']}; the value thresholds alone decide"
        )
        return True
    if "error" in champion:
        out["reasons"].append(
            f"champion version {champion.get('version')} could not be re-scored "
            f"({champion['error']}); failing closed"
        )
        return False
    theirs = champion["by_lead"]
    common = [k for k in theirs if k in val and val[k].get(primary) is not None and theirs[k].get(primary) is not None]
    if not common:
        out["reasons"].append(f"champion version {champion.get('version')} forecasts none of the leads "
                              f"{sorted(val, key=int)} with a finite {primary}; failing closed")
        return False
    score = sum(float(val[k][primary]) for k in common) / len(common)
    champ = sum(float(theirs[k][primary]) for k in common) / len(common)
    limit = champ * (1.0 + max_regression)
    ok = score <= limit
    out["champion_score"] = champ
    out["relative_change"] = (score - champ) / champ if champ > 0 else None
    out["reasons"].append(
        f"{winner} validation {primary} (mean over leads {', '.join(common)}) {score:.6g} "
        f"{'within' if ok else 'exceeds'} champion (v{champion.get('version')}, {champion.get('model')}, "
        f"fed {champion.get('feed', 'past')} weather) "
        f"{champ:.6g} x (1 + {max_regression}) = {limit:.6g}"
    )
    return ok


def champion_numbers(cfg: Config, tensors: Path, models_dir: Path,
                     scorer: ChampionScorer | None = None, forecasts: Path | None = None) -> dict[str, Any] | None:
    """Re-score the served champion under ``models_dir`` on the validation years of the
    tensor store ``tensors``, or None when nothing is served. A champion the gate chose with
    the forecast archive is re-scored with the ``forecasts`` store's runs (``feed``), as the
    challengers fed a forecast are: like for like."""
    from soilcast.evaluation.evaluate import other_inputs, score_savedmodel
    from soilcast.layout import bundle
    from soilcast.repository.versions import champion_version, read_metadata

    version = champion_version(models_dir)  # the one serving `stable`
    if version is None:
        return None
    version_dir = bundle(models_dir, version).root
    out: dict[str, Any] = {"version": version, "path": str(version_dir)}
    try:
        meta = read_metadata(version_dir)
        out["model"] = meta.get("model")
        out["feed"] = "forecast" if meta.get("served_feed") == "forecast" and forecasts is not None else "past"
        if (why := other_inputs(cfg, version_dir, meta)) is not None:
            out["incomparable"] = why
            return out
        if scorer is None:
            def scorer(c: Config, v: Path) -> ByLead:
                return score_savedmodel(c, tensors, v, forecasts=forecasts)
        out["by_lead"] = scorer(cfg, version_dir)
    except Exception as err:  # any failure is recorded and fails closed
        out["error"] = f"{type(err).__name__}: {err}"
    return out


def run_gate(cfg: Config, metrics_file: Path, tensors: Path, models_dir: Path, out_file: Path,
             scorer: ChampionScorer | None = None, forecasts: Path | None = None) -> Decision:
    """Read the evaluation ``metrics_file``, re-score the champion served from ``models_dir``
    on ``tensors`` (and the ``forecasts`` store's runs when it is served with them), decide,
    write the decision to ``out_file`` and return it."""
    path = Path(metrics_file)
    metrics = Leaderboard.read(path, "run the 'evaluate' stage first")
    champion = champion_numbers(cfg, tensors, models_dir, scorer, forecasts)
    from soilcast.ml.models.references import benchmark_names

    decision = decide(metrics, cfg.gate.primary_metric, cfg.gate.min_skill_vs_best_reference,
                      cfg.gate.max_regression, champion, benchmark_names(), Calibration.of(cfg))
    decision.metrics_file = str(path)
    decision.write(Path(out_file))
    return decision
