"""Hindcast figures: what a forecaster looks at before reading the score tables.

Three PNGs beside ``scores.json`` (:class:`soilcast.layout.HindcastDir`):

- ``hydrographs.png``: a panel per basin, the basin-mean soil moisture observed over the
  hindcast's valid days against the served forecast at the first and the last lead and
  persistence at the first lead (the forecast to beat there), with the served model's
  10-90 % band when it is probabilistic; the seasons shaded. A basin mean, not one cell,
  because a basin is what the scores and a water manager talk about.
- ``skill_by_lead.png``: the served model's MSE skill against persistence, climatology and
  the best reference at each lead (the period's lowest MSE), against lead; 0 is the
  reference.
- ``skill_by_season.png``: skill against persistence and against the best reference, per
  season (``evaluation.seasons``, in their order) and lead; seasons without a day in the
  period are left out and named.

Everything is read from what the hindcast already holds in memory (the valid-day forecasts
and the summary written to ``scores.json``), so a figure shows exactly the numbers scored:
the skills are taken from the summary, never recomputed from the plotted lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast import style
from soilcast.evaluation.leads import skill_against
from soilcast.evaluation.picks import basin_mean
from soilcast.evaluation.seasons import season_rows
from soilcast.layout import HindcastDir
from soilcast.serving.forecast_figures import basin_weights

BAND = 0.8  # the central interval drawn around the served forecast (10-90 %)
OBSERVED = "observed"
COMPARISONS = {"skill_vs_persistence": "vs persistence", "skill_vs_climatology": "vs climatology",
               "skill_vs_best_reference": "vs the best reference"}
COLOURS = {OBSERVED: "k", "first": "tab:blue", "last": "tab:orange", "persistence": "0.45",
           "skill_vs_persistence": "tab:blue", "skill_vs_climatology": "tab:green",
           "skill_vs_best_reference": "tab:red"}


@dataclass(frozen=True)
class FigureInputs:
    """What the figures read, all in memory at the end of a hindcast.

    ``fcs``: model name -> :class:`soilcast.serving.hindcast.ValidForecasts`; ``served``: the
    served model's key in ``fcs`` and in ``summary["scores"]``; ``persistence``: the
    persistence reference's key; ``summary``: what ``scores.json`` holds; ``grid``: anything
    with ``lat``, ``mask`` and ``basin_id`` (the store's tensors); ``figures``: params
    ``evaluation.figures``."""

    fcs: Mapping[str, Any]
    served: str
    persistence: str
    summary: Mapping[str, Any]
    grid: Any
    basin_names: Mapping[int, str]
    seasons: Mapping[str, Sequence[int]]
    figures: Any

    def title(self, what: str) -> str:
        """``what`` · served model and what answered · the valid period."""
        s = self.summary
        return style.title(what, f"{s['model']}, {s['served']}", f"valid {s['period']}")


def write_figures(out: HindcastDir, inp: FigureInputs) -> list[Path]:
    """Draw and save the three figures into ``out``; their paths, in ``out.figures`` order."""
    style.save(draw_hydrographs(inp), out.hydrographs, inp.figures)
    style.save(draw_skill_by_lead(inp), out.skill_by_lead, inp.figures)
    style.save(draw_skill_by_season(inp), out.skill_by_season, inp.figures)
    return list(out.figures)


# ----------------------------------------------------------------------------- the numbers


def hydrograph_lines(inp: FigureInputs) -> dict[int, dict[str, np.ndarray]]:
    """Basin id -> line label -> [N] basin means over the valid days: the observations, the
    served forecast at the first and last lead, persistence at the first lead and, for a
    probabilistic served model, the ``band`` limits (``band_lo``/``band_hi``, first lead)."""
    from soilcast.quantiles import interval_pairs

    fc, pers = inp.fcs[inp.served], inp.fcs[inp.persistence]
    first, last = 0, len(fc.leads) - 1
    fields = {OBSERVED: fc.obs[:, 0], served_label(fc, first): fc.pred[:, first],
              f"persistence, lead {fc.leads[first]} d": pers.pred[:, first]}
    if last != first:
        fields[served_label(fc, last)] = fc.pred[:, last]
    pairs = interval_pairs(fc.levels) if fc.quantiles is not None else {}
    if BAND in pairs:
        lo, hi = pairs[BAND]
        fields |= {"band_lo": fc.quantiles[:, first, lo], "band_hi": fc.quantiles[:, first, hi]}
    return {b: {name: basin_mean(f, w, w > 0) for name, f in fields.items()} for b, w in basin_weights(inp.grid).items()}


def served_label(fc: Any, k: int) -> str:
    """The legend label of the served forecast at lead index ``k``."""
    return f"served, lead {fc.leads[k]} d"


def skill_by_lead(summary: Mapping[str, Any], served: str) -> dict[str, dict[str, float | None]]:
    """Comparison (:data:`COMPARISONS`) -> lead key -> the served model's overall MSE skill,
    as ``scores.json`` holds it."""
    overall = summary["scores"][served]["overall"]
    out = {key: {lead: block.get(key) for lead, block in overall.items()}
           for key in ("skill_vs_persistence", "skill_vs_climatology")}
    out["skill_vs_best_reference"] = dict(summary["skill_vs_best_reference"][served])
    return out


def skill_by_season(summary: Mapping[str, Any], served: str, seasons: Sequence[str]
                    ) -> tuple[dict[str, dict[str, dict[str, float | None]]], list[str]]:
    """(comparison -> season -> lead key -> skill, the seasons left out): the served model's
    skill against persistence and against the period's best reference at each lead (chosen
    overall, as ``scores.md`` does), per season of ``seasons`` that has days in the period."""
    scores = summary["scores"]
    mine = scores[served]["seasons"]
    kept = [s for s in seasons if any(b.get("n") for b in mine.get(s, {}).values())]
    best = summary["best_reference"]
    vs_best = {s: {lead: skill_against({lead: mine[s][lead]}, {lead: scores[ref]["seasons"][s][lead]})[lead]
                   for lead, ref in best.items()} for s in kept}
    vs_pers = {s: {lead: b.get("skill_vs_persistence") for lead, b in mine[s].items()} for s in kept}
    return ({"skill_vs_persistence": vs_pers, "skill_vs_best_reference": vs_best},
            [s for s in seasons if s not in kept])


def season_spans(valid: pd.DatetimeIndex, seasons: Mapping[str, Sequence[int]]) -> list[tuple[str, int, int]]:
    """(season, first row, last row) of each run of consecutive valid days in one season."""
    which = np.full(len(valid), -1)
    for i, rows in enumerate(season_rows(valid, seasons).values()):
        which[rows] = i
    names = list(seasons)
    starts = np.flatnonzero(np.r_[True, which[1:] != which[:-1]])
    ends = np.r_[starts[1:] - 1, len(valid) - 1]
    return [(names[which[a]], int(a), int(b)) for a, b in zip(starts, ends) if which[a] >= 0]


def runs_text(best: Mapping[str, str]) -> str:
    """``1-2 d persistence; 3-7 d damped_persistence``: the best reference per lead, runs merged."""
    parts: list[tuple[str, str, str]] = []
    for lead, name in best.items():
        if parts and parts[-1][2] == name:
            parts[-1] = (parts[-1][0], lead, name)
        else:
            parts.append((lead, lead, name))
    return "; ".join(f"{a}" + (f"-{b}" if b != a else "") + f" d {n}" for a, b, n in parts)


# ----------------------------------------------------------------------------- the drawings


def draw_hydrographs(inp: FigureInputs) -> Any:
    """One panel per basin (:func:`hydrograph_lines`), seasons shaded, one legend below."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    plt = style.pyplot()
    fc = inp.fcs[inp.served]
    lines = hydrograph_lines(inp)
    x = fc.valid
    fig, axes = plt.subplots(len(lines), 1, sharex=True, squeeze=False, layout="constrained",
                             figsize=(11, 2.3 * len(lines) + 1.2))
    shades = season_shades(inp.seasons)
    spans = season_spans(x, inp.seasons)
    day = pd.Timedelta(hours=12)
    for ax, (bid, series) in zip(axes[:, 0], lines.items()):
        mark_seasons(ax, x, spans, shades)
        if "band_lo" in series:
            ax.fill_between(x, series["band_lo"], series["band_hi"], color=COLOURS["first"], alpha=0.2,
                            linewidth=0, label=f"served 10-90 %, lead {fc.leads[0]} d")
        for label, y in series.items():
            if not label.startswith("band_"):
                ax.plot(x, y, label=label, **line_style(label, fc))
        ax.set_title(inp.basin_names.get(bid, f"basin {bid}"), fontsize=10, loc="left")
        ax.set_ylabel("basin mean\nsoil moisture (m³ m⁻³)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.margins(y=0.1)  # room for the season strip above the highest value
        ax.set_label(f"basin {bid}")
    axes[-1, 0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes[-1, 0].xaxis.get_major_locator()))
    axes[-1, 0].set_xlim(x[0] - day, x[-1] + day)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    shown = dict.fromkeys(name for name, _, _ in spans)
    handles += [Patch(color=shades[s], label=s) for s in shown]
    labels += [f"season {s}" for s in shown]
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8, frameon=False)
    fig.suptitle(inp.title("Basin-mean soil moisture: observed, served forecast, persistence"), fontsize=10)
    return fig


def mark_seasons(ax: Any, x: pd.DatetimeIndex, spans: Sequence[tuple[str, int, int]],
                 shades: Mapping[str, Any]) -> None:
    """Each season run as a coloured strip along the panel's top and a dotted line where a
    season begins: marked, not shaded, so the season colours never mix with the lines' band."""
    day = pd.Timedelta(hours=12)
    for i, (name, a, b) in enumerate(spans):
        ax.axvspan(x[a] - day, x[b] + day, ymin=0.95, ymax=1.0, color=shades[name], linewidth=0)
        if i:
            ax.axvline(x[a] - day, color="0.5", linewidth=0.8, linestyle=(0, (1, 2)), zorder=0)


def line_style(label: str, fc: Any) -> dict[str, Any]:
    """Observed thick black; served first lead solid blue, last lead dashed orange;
    persistence dotted grey."""
    if label == OBSERVED:
        return {"color": COLOURS[OBSERVED], "linewidth": 1.8}
    if label == served_label(fc, 0):
        return {"color": COLOURS["first"], "linewidth": 1.2}
    if label.startswith("served"):
        return {"color": COLOURS["last"], "linewidth": 1.2, "linestyle": "--"}
    return {"color": COLOURS["persistence"], "linewidth": 1.1, "linestyle": ":"}


def season_shades(seasons: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """A light colour per season, fixed by its place in ``evaluation.seasons`` (so a season has
    the same shade in every hindcast)."""
    cmap = style.pyplot().get_cmap("Pastel2")
    return {name: cmap(i % cmap.N) for i, name in enumerate(seasons)}


def draw_skill_by_lead(inp: FigureInputs) -> Any:
    """The served model's overall skill per lead against each comparison, the zero line of
    the references, and which reference was best at which lead."""
    plt = style.pyplot()
    lines = skill_by_lead(inp.summary, inp.served)
    fig, ax = plt.subplots(figsize=(8.5, 4.6), layout="constrained")
    ax.axhline(0.0, color="k", linewidth=1.0, label="reference (skill 0)")
    values: list[float] = []
    for key, by_lead in lines.items():
        leads = [int(k) for k in by_lead]
        y = [np.nan if v is None else float(v) for v in by_lead.values()]
        values += y
        ax.plot(leads, y, marker="o", color=COLOURS[key], label=COMPARISONS[key])
    leads = [int(k) for k in inp.summary["scores"][inp.served]["overall"]]
    ax.set_xticks(leads)
    ax.set_ylim(*skill_limits(values, inp.figures))
    ax.set_ylabel("MSE skill, 1 − MSE/MSE_ref (above 0: better)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=4, fontsize=8, frameon=False)
    ax.set_xlabel("lead (days)\nbest reference (lowest MSE on this period) at lead "
                  + runs_text(inp.summary["best_reference"]), fontsize=8)
    fig.suptitle(inp.title("MSE skill of the served model by lead"), fontsize=10)
    return fig


def skill_limits(values: Sequence[float], figures: Any, pad: float = 0.05) -> tuple[float, float]:
    """The fixed skill scale (params ``evaluation.figures.scales.skill``), widened to show
    every value: two hindcasts compare by eye, and no point leaves the axes."""
    lo, hi = figures.scales.skill
    finite = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if finite.size:
        lo, hi = min(lo, float(finite.min()) - pad), max(hi, float(finite.max()) + pad)
    return lo, hi


def draw_skill_by_season(inp: FigureInputs) -> Any:
    """Two tables of colour (season x lead), skill vs persistence and vs the best reference,
    on the fixed diverging skill scale with the values written in; empty seasons named."""
    plt = style.pyplot()
    panels, omitted = skill_by_season(inp.summary, inp.served, list(inp.seasons))
    kept = list(next(iter(panels.values())))
    leads = list(inp.summary["best_reference"]) or list(inp.summary["scores"][inp.served]["overall"])
    fig, axes = plt.subplots(1, len(panels), squeeze=False, layout="constrained",
                             figsize=(4.0 + 0.55 * len(leads) * len(panels), max(2.8, 1.6 + 0.5 * len(kept))))
    scale = style.color_scale(inp.figures, "skill")
    image, every = None, []
    for ax, (key, by_season) in zip(axes[0], panels.items()):
        grid = np.array([[np.nan if by_season[s].get(k) is None else by_season[s][k] for k in leads] for s in kept],
                        np.float64).reshape(len(kept), len(leads))
        every += list(grid.ravel())
        image = ax.imshow(grid, aspect="auto", **scale)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(j, i, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="w" if np.isfinite(v) and abs(v) > 0.6 * max(abs(scale["norm"].vmin), scale["norm"].vmax)
                    else "k")
        ax.set_xticks(range(len(leads)), leads, fontsize=8)
        ax.set_yticks(range(len(kept)), kept, fontsize=8)
        ax.set(xlabel="lead (days)", title=COMPARISONS[key])
        ax.title.set_fontsize(9)
        ax.set_label(key)
    style.colorbar(fig, image, list(axes[0]), inp.figures, "skill", np.asarray(every), label="MSE skill")
    note = f"\nno days in the period: {', '.join(omitted)} (omitted)" if omitted else ""
    fig.suptitle(inp.title("MSE skill of the served model by season and lead") + note, fontsize=10)
    return fig
