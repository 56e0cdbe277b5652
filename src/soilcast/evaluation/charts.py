"""Evaluation charts from the scores alone (:class:`soilcast.records.Leaderboard`): skill
against lead, the scorecard, and skill per season and per basin against the best reference
at each lead (chosen on VALIDATION, as the scorecard and the gate choose it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from soilcast import style
from soilcast.evaluation.leads import best_references, lead_key, skill_against, skill_vs_best
from soilcast.evaluation.picks import line_styles, networks, period_of
from soilcast.records import Leaderboard


def _nan(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _benchmarks() -> tuple[str, ...]:
    from soilcast.ml.models.references import benchmark_names

    return benchmark_names()


def plot_skill_vs_lead(metrics: Leaderboard, out: Path, cfg: Any) -> Path:
    """``skill_vs_lead.png``: skill vs climatology and vs persistence against lead: a colour
    per network, solid with past weather only, dashed with the forecast archive's runs,
    dotted with perfect weather (the upper bound); references dashed in greys."""
    plt, leads, styles = style.pyplot(), metrics.leads(), line_styles(metrics)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharex=True)
    for ax, key, against in ((axes[0], "skill_vs_climatology", "climatology"),
                             (axes[1], "skill_vs_persistence", "persistence")):
        for name, entry in metrics.scored().items():
            st = styles[name]
            ax.plot(leads, _nan([entry.overall.get(lead_key(k), {}).get(key) for k in leads]), st["fmt"],
                    color=st["color"], lw=1.4, ms=4, label=name)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set(xlabel="lead (days)", ylabel="MSE skill (1 − MSE/MSE_ref)", title=f"vs {against}")
        ax.set_xticks(leads)
        ax.grid(alpha=0.3)
    ys = np.concatenate([np.asarray(line.get_ydata(), float) for line in axes[1].lines] or [np.zeros(1)])
    lo = float(np.nanmin(ys)) if np.isfinite(ys).any() else 0.0
    axes[1].set_ylim(max(min(lo, -0.2) - 0.05, -1.5), None)  # climatology's -10 at day 1 would hide the rest
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle(style.title("Test MSE skill against lead", style.version(cfg), period_of(metrics)), fontsize=10)
    fig.tight_layout()
    style.save(fig, out / "skill_vs_lead.png", cfg.evaluation.figures)
    return out / "skill_vs_lead.png"


def plot_scorecard(metrics: Leaderboard, out: Path, cfg: Any) -> Path:
    """``scorecard.png``: model x lead, coloured on the fixed skill scale by the test MSE
    skill against the best reference at each lead, the value in each cell."""
    plt, figures = style.pyplot(), cfg.evaluation.figures
    leads, scored = metrics.leads(), metrics.scored()
    best = best_references(metrics, _benchmarks())
    names = networks(metrics) + [n for n in scored if scored[n].kind == "reference"]
    grid = np.array([_nan([skill_vs_best(metrics, n, best, "test").get(lead_key(k)) for k in leads]) for n in names])
    fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(leads), 1.4 + 0.45 * len(names)))
    scale = style.color_scale(figures, "skill")
    im = ax.imshow(grid, aspect="auto", **scale)
    for (i, j), v in np.ndenumerate(grid):
        dark = np.isfinite(v) and abs(float(scale["norm"](v)) - 0.5) > 0.35
        ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8,
                color="white" if dark else "black")
    ax.set_xticks(range(len(leads)), [f"lead {k} d" for k in leads], fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.axhline(len(networks(metrics)) - 0.5, color="k", lw=1.2)
    by_ref = "; ".join(f"{r}: lead {', '.join(k for k in best if best[k] == r)}" for r in sorted(set(best.values())))
    ax.set_title(style.title("Test MSE skill vs the best reference at each lead", style.version(cfg),
                             period_of(metrics)), fontsize=9)
    ax.set_xlabel(f"best reference (chosen on validation) — {by_ref}", fontsize=7)
    style.colorbar(fig, im, ax, figures, "skill", grid, label="1 − MSE/MSE_best (blue: better)")
    style.save(fig, out / "scorecard.png", figures)
    return out / "scorecard.png"


def group_skill(metrics: Leaderboard, name: str, part: str, group: str, best: dict[str, str]) -> dict[str, float | None]:
    """Per lead key: the test MSE skill of ``name`` in one season or basin (``part``:
    "seasons" or "basins"; ``group``: its name) against the best reference at that lead
    (``best``), scored on the same season or basin."""
    scored = metrics.scored()
    mine = getattr(scored[name], part).get(group, {})
    out: dict[str, float | None] = {}
    for key, ref in best.items():
        theirs = getattr(scored[ref], part).get(group, {}) if ref in scored else {}
        out[key] = skill_against({key: mine.get(key, {})}, {key: theirs.get(key, {})})[key]
    return out


def plot_group_skill(metrics: Leaderboard, part: str, groups: list[str], out: Path, cfg: Any) -> Path | None:
    """``season_skill.png`` / ``basin_skill.png`` (``part``): each network's test MSE skill
    against the best reference per season or basin (``groups``, x) at the first and the last
    lead (rows); a colour per network, hatched by feed; the legend beside the axes."""
    nets, leads = networks(metrics), metrics.leads()
    if not nets or not groups or not leads:
        return None
    plt, styles, best = style.pyplot(), line_styles(metrics), best_references(metrics, _benchmarks())
    shown = sorted({leads[0], leads[-1]})
    width, x = 0.8 / len(nets), np.arange(len(groups))
    fig, axes = plt.subplots(len(shown), 1, figsize=(max(6.0, 0.35 * len(groups) * len(nets) + 2), 3.2 * len(shown)),
                             squeeze=False, sharex=True, sharey=True)
    for ax, lead in zip(axes[:, 0], shown):
        key = lead_key(lead)
        for i, name in enumerate(nets):
            vals = _nan([group_skill(metrics, name, part, g, best).get(key) for g in groups])
            ax.bar(x + (i - (len(nets) - 1) / 2) * width, vals, width, color=styles[name]["color"],
                   hatch=styles[name]["hatch"], edgecolor="white", label=name)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.grid(axis="y", alpha=0.3)
        ax.set(ylabel="1 − MSE/MSE_best", title=f"lead {lead} d: vs {best.get(key, 'n/a')} (best on validation)")
        ax.title.set_fontsize(9)
    axes[-1, 0].set_xticks(x, groups, rotation=20 if part == "basins" else 0, ha="right" if part == "basins" else "center")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    what = f"Test MSE skill per {part[:-1]} vs the best reference at each lead"
    fig.suptitle(style.title(what, style.version(cfg), period_of(metrics)), fontsize=10)
    fig.tight_layout()
    path = out / f"{part[:-1]}_skill.png"
    style.save(fig, path, cfg.evaluation.figures)
    return path
