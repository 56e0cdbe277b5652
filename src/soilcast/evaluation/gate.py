"""Promotion gate: bless the best trained network only if it is worth serving.

The winner is the network with the lowest primary metric on the VALIDATION years (model
selection never looks at the test years; their scores are recorded for reporting). Checks,
all on the validation years, all must pass (TFX Evaluator-style value and change thresholds):

1. value vs climatology: 1 - MSE/MSE_clim >= ``cfg.gate.min_skill_vs_climatology``;
2. value vs persistence: 1 - MSE/MSE_pers >= ``cfg.gate.min_skill_vs_persistence`` whenever
   the model reads antecedent soil moisture (then "tomorrow = today" is free, and a forecast
   that loses to it has no value for an operator);
3. change: when a champion is served (the version labelled ``stable``, else the newest), it is
   re-scored on the same validation windows and the winner's primary metric may be worse by
   at most ``cfg.gate.max_regression`` (relative). A champion that cannot be re-scored (files
   broken, or a grid that no longer matches the data) blocks the promotion: fail closed,
   with the reason. A champion trained on other input variables than params' (its bundle's
   metadata lists them) cannot be compared at all: the decision records that, and the value
   thresholds alone decide (the change of inputs is the point of the new model).

The linear reference's scores are recorded beside the winner's (``beats_linear``), so the
decision shows whether the network earns its compute. The decision is written to the
blessing file (``Layout.blessing``); the export stage reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from soilcast.config import Config
from soilcast.records import Decision, Leaderboard

ChampionScorer = Callable[[Config, Path], dict[str, float]]
SKILLS = ("skill_vs_climatology", "skill_vs_persistence")


def pick_winner(metrics: Leaderboard, primary: str) -> tuple[str | None, dict[str, float]]:
    """The network with the lowest finite VALIDATION primary metric (gate metrics are errors,
    see ``Gate.primary_metric``); networks are the entries evaluation marks ``kind: network``."""
    scores: dict[str, float] = {}
    for name, entry in metrics.scored().items():
        if entry.kind != "network":
            continue
        value = metrics.val_of(name).get(primary)
        if value is not None and math.isfinite(value):
            scores[name] = float(value)
    if not scores:
        return None, scores
    return min(scores, key=lambda n: (scores[n], n)), scores


def _threshold(out: dict[str, Any], winner: str, val: Mapping[str, Any], key: str, required: float) -> bool:
    skill = val.get(key)
    ok = skill is not None and math.isfinite(skill) and skill >= required
    out["reasons"].append(
        f"{winner}: validation {key.replace('_', ' ')} {skill} {'>=' if ok else 'is below'} required {required}")
    return ok


def decide(
    metrics: Leaderboard,
    primary: str,
    min_skill: float,
    max_regression: float,
    champion: Mapping[str, Any] | None,
    min_skill_vs_persistence: float | None = None,
) -> Decision:
    """Pure decision from the evaluation metrics and the champion's re-scored numbers.

    ``champion`` is None (nothing served) or ``{"version", "model", primary: value}`` or
    ``{"version", "error": message}`` when it could not be re-scored.
    ``min_skill_vs_persistence`` None: not enforced (the model reads no soil moisture).
    """
    winner, scores = pick_winner(metrics, primary)
    out: dict[str, Any] = {
        "primary_metric": primary,
        "selected_on": "validation",
        "candidates": scores,
        "winner": winner,
        "thresholds": {"min_skill_vs_climatology": min_skill,
                       "min_skill_vs_persistence": min_skill_vs_persistence,
                       "max_regression": max_regression},
        "champion": dict(champion) if champion else None,
        "reasons": [],
    }
    if winner is None:
        out.update(blessed=False, reasons=["no trained network has a finite validation " + primary])
        return Decision.from_json(out, "gate decision")
    val, test = metrics.val_of(winner), metrics.overall_of(winner)
    out["winner_score"] = scores[winner]
    out["validation"] = {k: val.get(k) for k in (primary, *SKILLS)}
    out["test"] = {k: test.get(k) for k in (primary, *SKILLS)}
    out.update({k: val.get(k) for k in SKILLS})
    linear = metrics.val_of("linear").get(primary)
    out["linear_reference"] = {"validation": linear, "test": metrics.overall_of("linear").get(primary)}
    out["beats_linear"] = None if linear is None else bool(scores[winner] < linear)
    value_ok = _threshold(out, winner, val, "skill_vs_climatology", min_skill)
    if min_skill_vs_persistence is not None:
        value_ok &= _threshold(out, winner, val, "skill_vs_persistence", min_skill_vs_persistence)
    else:
        out["reasons"].append("persistence threshold not enforced: the model reads no soil moisture")
    change_ok = _change_check(out, winner, scores[winner], primary, max_regression, champion)
    out["blessed"] = bool(value_ok and change_ok)
    return Decision.from_json(out, "gate decision")


def _change_check(out: dict[str, Any], winner: str, score: float, primary: str,
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
    champ = float(champion[primary])
    limit = champ * (1.0 + max_regression)
    ok = score <= limit
    out["champion_score"] = champ
    out["relative_change"] = (score - champ) / champ if champ > 0 else None
    out["reasons"].append(
        f"{winner} validation {primary} {score:.6g} {'within' if ok else 'exceeds'} champion "
        f"(v{champion.get('version')}, {champion.get('model')}) {champ:.6g} "
        f"x (1 + {max_regression}) = {limit:.6g}"
    )
    return ok


def champion_numbers(cfg: Config, tensors: Path, models_dir: Path,
                     scorer: ChampionScorer | None = None) -> dict[str, Any] | None:
    """Re-score the served champion under ``models_dir`` on the validation years of the
    tensor store ``tensors``, or None when nothing is served."""
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
        if (why := other_inputs(cfg, version_dir, meta)) is not None:
            out["incomparable"] = why
            return out
        if scorer is None:
            def scorer(c: Config, v: Path) -> dict[str, float]:
                return score_savedmodel(c, tensors, v)
        out.update(scorer(cfg, version_dir))
    except Exception as err:  # any failure is recorded and fails closed
        out["error"] = f"{type(err).__name__}: {err}"
    return out


def run_gate(cfg: Config, metrics_file: Path, tensors: Path, models_dir: Path, out_file: Path,
             scorer: ChampionScorer | None = None) -> Decision:
    """Read the evaluation ``metrics_file``, re-score the champion served from ``models_dir``
    on ``tensors``, decide, write the decision to ``out_file`` and return it."""
    path = Path(metrics_file)
    metrics = Leaderboard.read(path, "run the 'evaluate' stage first")
    champion = champion_numbers(cfg, tensors, models_dir, scorer)
    decision = decide(
        metrics,
        cfg.gate.primary_metric,
        cfg.gate.min_skill_vs_climatology,
        cfg.gate.max_regression,
        champion,
        cfg.gate.min_skill_vs_persistence if cfg.window.antecedent_soil_moisture else None,
    )
    decision.metrics_file = str(path)
    decision.write(Path(out_file))
    return decision
