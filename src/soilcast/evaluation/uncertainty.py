"""How sure a forecast is: the probabilistic scores of the leaderboard, by lead, and their figures.

Reads only the evaluation metrics (:class:`soilcast.records.Leaderboard`), never forecasts:

- :func:`uncertainty_table`: the leaderboard section "How sure" (markdown lines): CRPS skill
  against the best probabilistic reference at each lead (the one of
  :func:`soilcast.ml.models.references.probabilistic_benchmark_names` with the lower
  VALIDATION CRPS there, as the gate chooses it), against each probabilistic reference,
  the 80 % interval coverage and spread-error ratio of the probabilistic models, the Brier
  skill of "D1 or worse", and each network's GloFAS-style headline (:func:`headline`);
- :func:`plot_calibration`: ``pit_histogram.png`` and ``reliability_d1.png``;
- :func:`plot_crps_skill_vs_lead`: ``crps_skill_vs_lead.png``;
- :func:`write_uncertainty_plots`: all three (nothing when no model forecasts quantiles).

Every score is a test-year score except the choice of the best reference. A point
forecast's CRPS is its MAE, so point and probabilistic models share one scale.

``references``: the probabilistic reference names; None = the registry's (importing the
registry imports the model code, so it is imported only then).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soilcast import style
from soilcast.evaluation.leads import lead_key, mean_over_leads
from soilcast.evaluation.picks import line_styles, period_of
from soilcast.evaluation.probabilistic import skill
from soilcast.records import ByLead, Leaderboard, Scored

CLIM_DISTRIBUTION = "clim_distribution"  # the headline's and the Brier skill's reference
HEADLINE_SKILL = 0.5  # GloFAS: the longest lead with CRPS skill vs climatology above 0.5
COVERAGE_KEY, COVERAGE_NOMINAL = "coverage_80", 0.8
PIT_FILE, RELIABILITY_FILE, SKILL_FILE = "pit_histogram.png", "reliability_d1.png", "crps_skill_vs_lead.png"


def _refs(references: Sequence[str] | None) -> tuple[str, ...]:
    if references is None:
        from soilcast.ml.models.references import probabilistic_benchmark_names

        return tuple(probabilistic_benchmark_names())
    return tuple(references)


def _finite(v: float | int | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def _crps(by_lead: ByLead, key: str) -> float | None:
    return _finite(by_lead.get(key, {}).get("crps"))


def is_probabilistic(entry: Scored) -> bool:
    """A quantile forecast (more levels than the median alone)."""
    return len(entry.levels) > 1


def with_crps(metrics: Leaderboard) -> dict[str, Scored]:
    """The scored models with a finite test CRPS at some lead, in file order."""
    return {n: e for n, e in metrics.scored().items()
            if any(_finite(b.get("crps")) is not None for b in e.overall.values())}


def best_probabilistic_references(metrics: Leaderboard, references: Sequence[str] | None = None) -> dict[str, str]:
    """Per lead key: the probabilistic reference with the lowest finite VALIDATION CRPS there
    (ties by name); leads where none has one are left out."""
    refs = {n: metrics.val_of(n) for n in _refs(references) if n in metrics.scored()}
    out: dict[str, str] = {}
    for lead in metrics.leads():
        key = lead_key(lead)
        finite = {n: c for n, v in refs.items() if (c := _crps(v, key)) is not None}
        if finite:
            out[key] = min(finite, key=lambda n: (finite[n], n))
    return out


def crps_skill_vs(metrics: Leaderboard, name: str, reference: str) -> dict[str, float | None]:
    """Per lead key: the test CRPS skill of ``name`` against ``reference`` (the block's
    ``crps_skill_vs_<reference>`` when evaluation wrote it, else from the two CRPS)."""
    mine, theirs = metrics.overall_of(name), metrics.overall_of(reference)
    stored = f"crps_skill_vs_{reference}"
    out: dict[str, float | None] = {}
    for lead in metrics.leads():
        key = lead_key(lead)
        block = mine.get(key, {})
        out[key] = _finite(block[stored]) if stored in block else skill(_crps(mine, key), _crps(theirs, key))
    return out


def crps_skill_vs_best(metrics: Leaderboard, name: str, best: dict[str, str]) -> dict[str, float | None]:
    """Per lead key: the test CRPS skill of ``name`` against the best probabilistic reference
    at that lead (``best``, chosen on validation); None where there is none."""
    mine = metrics.overall_of(name)
    return {lead_key(k): (skill(_crps(mine, lead_key(k)), _crps(metrics.overall_of(best[lead_key(k)]), lead_key(k)))
                          if lead_key(k) in best else None) for k in metrics.leads()}


def headline(metrics: Leaderboard, name: str) -> int | None:
    """The longest lead (days) at which ``name``'s test CRPS skill against the climatological
    distribution exceeds 0.5 (GloFAS' headline score); None when it does at no lead, or the
    model or the climatological distribution was not scored."""
    if name not in metrics.scored() or CLIM_DISTRIBUTION not in metrics.scored():
        return None
    vals = crps_skill_vs(metrics, name, CLIM_DISTRIBUTION)
    above = [k for k in metrics.leads() if (v := vals.get(lead_key(k))) is not None and v > HEADLINE_SKILL]
    return max(above) if above else None


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    text = f"{v:.4f}"
    return "0.0000" if text == "-0.0000" else text  # a mean of +-x rounds to zero, not below it


def _row(cells: Sequence[str], values: dict[str, float | None], keys: list[str]) -> str:
    vals = [values.get(k) for k in keys]
    return "| " + " | ".join(cells) + " | " + " | ".join(_fmt(v) for v in vals) + f" | {_fmt(mean_over_leads(values))} |"


def uncertainty_table(metrics: Leaderboard, references: Sequence[str] | None = None) -> list[str]:
    """Markdown lines of the leaderboard section "How sure" (module docstring), starting
    with a blank line; [] when no model has a CRPS."""
    models = with_crps(metrics)
    if not models:
        return []
    refs = _refs(references)
    scored_refs = [r for r in refs if r in metrics.scored()]
    leads = metrics.leads()
    keys = [lead_key(k) for k in leads]
    best = best_probabilistic_references(metrics, refs)
    vs_best = {n: crps_skill_vs_best(metrics, n, best) for n in models}
    mean = {n: mean_over_leads(vs_best[n]) for n in models}

    def ranked(kind: str) -> list[str]:
        names = [n for n, e in models.items() if (e.kind == "network") == (kind == "network")]
        return sorted(names, key=lambda n: (mean[n] is None, -(mean[n] or 0.0), n))

    order = ranked("network") + ranked("reference")
    lead_cols = " | ".join(f"lead {k}" for k in leads) + " | mean |"
    rule = "---|" * (len(leads) + 1)
    best_text = ", ".join(f"lead {k}: {best.get(lead_key(k), 'n/a')}" for k in leads)
    lines = [
        "", "## How sure: probabilistic scores by lead (test years)", "",
        "CRPS of the quantile forecasts (scoringrules' `crps_quantile`, area-weighted over basin-mask cells); "
        "a point forecast's CRPS is its MAE, so point and probabilistic models share one scale. "
        "CRPS skill = 1 - CRPS/CRPS_ref (positive: better than the reference). The best probabilistic "
        f"reference at each lead is the one of {', '.join(refs)} with the lower VALIDATION CRPS there "
        f"({best_text}). Brier skill: of the event \"D1 or worse\" (soil moisture at or below the 20th "
        f"percentile of the valid day's training-years distribution), against {CLIM_DISTRIBUTION}. "
        f"Coverage: share of observations inside the central {COVERAGE_NOMINAL:.0%} interval (nominal "
        f"{COVERAGE_NOMINAL:.2f}); spread-error ratio about 1 when the spread matches the median's error "
        "(below 1: overconfident, above 1: too wide).",
        "",
        f"Headline (as GloFAS reports it): the longest lead with CRPS skill vs {CLIM_DISTRIBUTION} > {HEADLINE_SKILL}:",
        "",
    ]
    for n in ranked("network"):
        if CLIM_DISTRIBUTION not in metrics.scored():
            text = f"n/a ({CLIM_DISTRIBUTION} not scored)"
        else:
            h = headline(metrics, n)
            text = f"lead {h} d" if h is not None else f"no lead (skill <= {HEADLINE_SKILL} at every lead)"
        lines.append(f"- {n}: {text}")
    lines += ["", "### CRPS skill vs the best probabilistic reference", "",
              "| rank | model | kind | " + lead_cols, "|---|---|---|" + rule]
    lines += [_row([str(i), n, models[n].kind], vs_best[n], keys) for i, n in enumerate(order, 1)]
    lines += ["", "### CRPS (m3/m3, lower is better)", "", "| model | " + lead_cols, "|---|" + rule]
    lines += [_row([n], {k: _crps(models[n].overall, k) for k in keys}, keys) for n in order]
    if scored_refs:
        lines += ["", "### CRPS skill vs each probabilistic reference", "", "| model | against | " + lead_cols,
                  "|---|---|" + rule]
        for n in order:
            for i, r in enumerate(scored_refs):
                lines.append(_row([n if i == 0 else "", r], crps_skill_vs(metrics, n, r), keys))
    prob = [n for n in order if is_probabilistic(models[n])]
    if prob:
        lines += ["", f"### Calibration: {COVERAGE_NOMINAL:.0%} interval coverage (nominal {COVERAGE_NOMINAL:.2f}) "
                  "and spread-error ratio (ideal 1)", "", "| model | score | " + lead_cols, "|---|---|" + rule]
        for n in prob:
            for i, (metric, label) in enumerate(((COVERAGE_KEY, f"coverage {COVERAGE_NOMINAL:.0%}"),
                                                 ("spread_error_ratio", "spread/error"))):
                lines.append(_row([n if i == 0 else "", label],
                                  {k: _finite(models[n].overall.get(k, {}).get(metric)) for k in keys}, keys))
    if CLIM_DISTRIBUTION in metrics.scored():
        lines += ["", f"### Brier skill of D1 or worse vs {CLIM_DISTRIBUTION}", "", "| model | " + lead_cols,
                  "|---|" + rule]
        lines += [_row([n], {k: _finite(models[n].overall.get(k, {}).get("brier_skill_d1")) for k in keys}, keys)
                  for n in order]
    return lines


# --------------------------------------------------------------------------- figures


def _shown_leads(keys: Sequence[str]) -> list[str]:
    """The first and the last of the lead keys (sorted by lead)."""
    ordered = sorted(keys, key=int)
    return list(dict.fromkeys([ordered[0], ordered[-1]])) if ordered else []


def _figures(cfg: Any) -> Any:
    return None if cfg is None else cfg.evaluation.figures


def _title(what: str, metrics: Leaderboard, cfg: Any) -> str:
    return style.title(what, style.version(cfg), period_of(metrics))


def _nan(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def plot_calibration(metrics: Leaderboard, out: Path, names: list[str] | None = None,
                     references: Sequence[str] | None = None, cfg: Any = None) -> list[Path]:
    """``pit_histogram.png``: per probabilistic network (or ``names``) its PIT histogram
    (density: uniform = 1) at the first and the last lead; ``reliability_d1.png``: the
    reliability diagram of "D1 or worse" at those leads, a line per such model and per
    probabilistic reference with calibration (marker area: the bin's share of points).
    Returns the files written (none without calibration). ``cfg``: the config whose
    ``evaluation.figures`` and params hash the figures take (style defaults without it)."""

    scored = metrics.scored()
    if names is None:
        names = [n for n, e in scored.items() if e.kind == "network" and is_probabilistic(e)]
    nets = [n for n in names if n in scored and scored[n].calibration]
    refs = [r for r in _refs(references) if r in scored and scored[r].calibration and r not in nets]
    written: list[Path] = []
    if not nets and not refs:
        return written
    plt = style.pyplot()
    out.mkdir(parents=True, exist_ok=True)
    keys = _shown_leads(list(dict.fromkeys(k for n in nets + refs for k in scored[n].calibration)))
    styles = line_styles(metrics)
    if nets:
        fig, axes = plt.subplots(len(nets), len(keys), figsize=(4.2 * len(keys), 2.8 * len(nets)), squeeze=False,
                                 sharey=True)
        for row, n in zip(axes, nets):
            for ax, key in zip(row, keys):
                pit = _nan((scored[n].calibration.get(key) or {}).get("pit") or [])
                if pit.size:
                    bins = pit.size
                    ax.bar((np.arange(bins) + 0.5) / bins, pit * bins, width=1.0 / bins, color=styles[n]["color"],
                           alpha=0.75, edgecolor="white")
                ax.axhline(1.0, color="k", ls="--", lw=1.0, label="uniform (calibrated)")
                ax.set(xlim=(0, 1), title=f"{n}, lead {key} d", xlabel="PIT = F(observation)")
                ax.title.set_fontsize(9)
            row[0].set_ylabel("density")
        axes[0, 0].legend(fontsize=7, loc="upper center")
        fig.suptitle(_title("PIT histograms (U: overconfident, hump: too wide)", metrics, cfg), fontsize=10)
        fig.tight_layout()
        style.save(fig, out / PIT_FILE, _figures(cfg))
        written.append(out / PIT_FILE)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.6 * len(keys), 4.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([0, 1], [0, 1], color="k", lw=0.8, ls=":", label="perfect reliability")
        for n in nets + refs:
            rel = (scored[n].calibration.get(key) or {}).get("reliability") or {}
            p, o, c = _nan(rel.get("forecast", [])), _nan(rel.get("observed", [])), _nan(rel.get("count", []))
            if not p.size:
                continue
            ok = np.isfinite(p) & np.isfinite(o)
            share = np.where(np.isfinite(c), c, 0.0) / max(float(np.nansum(c)), 1e-12)
            st = styles.get(n, {"fmt": "o-", "color": "tab:blue"})
            ax.plot(p[ok], o[ok], st["fmt"][1:] or "-", color=st["color"], lw=1.3, label=n)
            ax.scatter(p[ok], o[ok], s=12 + 250 * share[ok], color=st["color"], marker=st["fmt"][0], alpha=0.7,
                       edgecolors="k", linewidths=0.4)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="forecast probability of D1 or worse", ylabel="observed frequency",
               title=f"lead {key} d")
        ax.title.set_fontsize(9)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    fig.suptitle(_title("Reliability of D1 or worse", metrics, cfg), fontsize=10)
    fig.tight_layout()
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5),
               fontsize=7)  # beside the panels: inside, it hid the low-probability bins
    fig.text(0.5, -0.02, "marker area: the bin's share of the points (area-weighted)", ha="center", fontsize=7)
    style.save(fig, out / RELIABILITY_FILE, _figures(cfg))
    written.append(out / RELIABILITY_FILE)
    return written


def plot_crps_skill_vs_lead(metrics: Leaderboard, out: Path, references: Sequence[str] | None = None,
                            cfg: Any = None) -> Path | None:
    """``crps_skill_vs_lead.png``: test CRPS skill against each probabilistic reference by
    lead, every model with a CRPS (styles as in ``skill_vs_lead.png``); None (nothing
    written) when no model has a CRPS or no reference was scored."""

    models = with_crps(metrics)
    refs = [r for r in _refs(references) if r in metrics.scored()]
    if not models or not refs:
        return None
    plt = style.pyplot()
    out.mkdir(parents=True, exist_ok=True)
    leads = metrics.leads()
    styles = line_styles(metrics)
    fig, axes = plt.subplots(1, len(refs), figsize=(6 * len(refs), 4.6), sharex=True, squeeze=False)
    for ax, ref in zip(axes[0], refs):
        for n in models:
            vals = crps_skill_vs(metrics, n, ref)
            st = styles[n]
            ax.plot(leads, _nan([vals.get(lead_key(k)) for k in leads]), st["fmt"], color=st["color"], lw=1.4, ms=4,
                    label=n)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set(xlabel="lead (days)", ylabel="CRPS skill (1 - CRPS/CRPS_ref)", title=f"vs {ref}")
        ax.set_xticks(leads)
        ax.grid(alpha=0.3)
        ys = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.lines] or [np.zeros(1)])
        if np.isfinite(ys).any():  # a point forecast far below zero would hide the rest
            ax.set_ylim(max(min(float(np.nanmin(ys)), -0.2) - 0.05, -1.5), max(float(np.nanmax(ys)), 0.0) + 0.05)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle(_title("Test CRPS skill against lead", metrics, cfg), fontsize=10)
    fig.tight_layout()
    style.save(fig, out / SKILL_FILE, _figures(cfg))
    return out / SKILL_FILE


def write_uncertainty_plots(metrics: Leaderboard, out: Path, references: Sequence[str] | None = None,
                            cfg: Any = None) -> list[Path]:
    """Every uncertainty figure into ``out``; nothing when no scored model forecasts quantiles.
    Returns the files written. ``cfg``: as for :func:`plot_calibration`."""
    if not any(is_probabilistic(e) for e in metrics.scored().values()):
        return []
    refs = _refs(references)
    written = plot_calibration(metrics, out, references=refs, cfg=cfg)
    skill_png = plot_crps_skill_vs_lead(metrics, out, references=refs, cfg=cfg)
    return written + ([skill_png] if skill_png is not None else [])
