"""Promotion gate: bless the best trained network only if it is worth serving.

Two checks, both must pass (a TFX Evaluator-style "value threshold" and "change threshold"):

1. value: the winner's MSE skill against climatology, 1 - MSE/MSE_clim, is at least
   ``cfg.gate.min_skill_vs_climatology`` (a model that cannot beat the calendar is useless);
2. change: when a champion is served (newest version under ``cfg.paths.models_dir``), the
   champion SavedModel is re-scored on the same test windows and the winner's primary metric
   may be worse by at most ``cfg.gate.max_regression`` (relative). With no champion, the
   value threshold alone decides. A champion that cannot be re-scored (files broken, or a
   grid that no longer matches the data) blocks the promotion: fail closed, with the reason.

The decision is written to ``artifacts/gate/blessing.json``; the export stage reads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from soilcast.config import NETWORKS, Config

ChampionScorer = Callable[[Config, Path], dict[str, float]]


def metrics_path(cfg: Config) -> Path:
    return cfg.paths.artifacts_dir / "eval" / "metrics.json"


def blessing_path(cfg: Config) -> Path:
    return cfg.paths.artifacts_dir / "gate" / "blessing.json"


def pick_winner(metrics: Mapping[str, Any], primary: str) -> tuple[str | None, dict[str, float]]:
    """The evaluated network with the lowest finite primary metric (all gate metrics are errors)."""
    scores: dict[str, float] = {}
    for name in NETWORKS:
        entry = metrics.get(name) or {}
        value = (entry.get("overall") or {}).get(primary) if entry.get("status") == "ok" else None
        if value is not None and math.isfinite(value):
            scores[name] = float(value)
    if not scores:
        return None, scores
    return min(scores, key=lambda n: (scores[n], n)), scores


def decide(
    metrics: Mapping[str, Any],
    primary: str,
    min_skill: float,
    max_regression: float,
    champion: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Pure decision from the evaluation metrics and the champion's re-scored numbers.

    ``champion`` is None (nothing served) or ``{"version", "model", primary: value}`` or
    ``{"version", "error": message}`` when it could not be re-scored.
    """
    winner, scores = pick_winner(metrics, primary)
    out: dict[str, Any] = {
        "primary_metric": primary,
        "candidates": scores,
        "winner": winner,
        "thresholds": {"min_skill_vs_climatology": min_skill, "max_regression": max_regression},
        "champion": dict(champion) if champion else None,
        "reasons": [],
    }
    if winner is None:
        out.update(blessed=False, reasons=["no trained network has a finite " + primary])
        return out
    overall = metrics[winner]["overall"]
    skill = overall.get("skill_vs_climatology")
    value_ok = skill is not None and math.isfinite(skill) and skill >= min_skill
    out["winner_score"] = scores[winner]
    out["skill_vs_climatology"] = skill
    out["reasons"].append(
        f"{winner}: skill vs climatology {skill} "
        f"{'>=' if value_ok else 'is below'} required {min_skill}"
    )
    change_ok = True
    if champion is not None:
        if "error" in champion:
            change_ok = False
            out["reasons"].append(
                f"champion version {champion.get('version')} could not be re-scored "
                f"({champion['error']}); failing closed"
            )
        else:
            champ = float(champion[primary])
            limit = champ * (1.0 + max_regression)
            change_ok = scores[winner] <= limit
            out["champion_score"] = champ
            out["relative_change"] = (scores[winner] - champ) / champ if champ > 0 else None
            out["reasons"].append(
                f"{winner} {primary} {scores[winner]:.6g} "
                f"{'within' if change_ok else 'exceeds'} champion "
                f"(v{champion.get('version')}, {champion.get('model')}) {champ:.6g} "
                f"x (1 + {max_regression}) = {limit:.6g}"
            )
    else:
        out["reasons"].append("no served champion: the value threshold alone decides")
    out["blessed"] = bool(value_ok and change_ok)
    return out


def champion_numbers(cfg: Config, scorer: ChampionScorer | None = None) -> dict[str, Any] | None:
    """Re-score the newest served version, or None when nothing is served."""
    from soilcast.export.versions import latest_version, read_metadata

    version = latest_version(cfg.paths.models_dir)
    if version is None:
        return None
    version_dir = cfg.paths.models_dir / str(version)
    out: dict[str, Any] = {"version": version, "path": str(version_dir)}
    try:
        out["model"] = read_metadata(version_dir).get("model")
        if scorer is None:
            from soilcast.evaluation.evaluate import score_savedmodel as scorer
        out.update(scorer(cfg, version_dir))
    except Exception as err:  # noqa: BLE001 - any failure is recorded and fails closed
        out["error"] = f"{type(err).__name__}: {err}"
    return out


def run_gate(cfg: Config, scorer: ChampionScorer | None = None) -> dict[str, Any]:
    """Read the evaluation metrics, decide, write ``blessing.json`` and return the decision."""
    import json

    from soilcast.io.atomic import atomic_write_json

    path = metrics_path(cfg)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: evaluation metrics not found (run the 'evaluate' stage first)")
    metrics = json.loads(path.read_text())
    champion = champion_numbers(cfg, scorer)
    decision = decide(
        metrics,
        cfg.gate.primary_metric,
        cfg.gate.min_skill_vs_climatology,
        cfg.gate.max_regression,
        champion,
    )
    decision["metrics_file"] = str(path)
    atomic_write_json(blessing_path(cfg), decision)
    return decision
