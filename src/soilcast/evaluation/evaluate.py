"""Score every model on the validation and test years, at every lead: overall, per basin
and per season.

Two splits, two purposes: the VALIDATION scores (``val``) are what model selection and the
gate use; the TEST scores (``overall``, ``seasons``, ``basins``) are for reporting only.
The references (persistence, climatology, damped persistence, linear: a per-cell ridge
regression) are scored beside every network at every lead. A network whose training record
does not match the current config and tensor store (a leftover of an earlier run) is refused,
not scored, and the reason is written into the metrics file and the leaderboard.

One forecasting path: the store is opened once, each reference is fitted once on its
training years, and every model (a :class:`soilcast.forecasting.Forecaster`) forecasts the
same windows of a split ([N, K, H, W]). Scores are over mask cells only, weighted by
cos(latitude) so a cell counts by its area; every block is keyed by lead. Seasons split each
lead's VALID dates into the JJAS south-west monsoon and the rest of the year. Skill scores
use persistence and the training-period climatology at the same lead, and the anomaly
correlation is taken against that climatology; the skill against the best reference at each
lead is derived from the MSEs (:mod:`soilcast.evaluation.leads`).

A network with no trained run folder among the ``runs`` given is reported as skipped, so a
config that trains only some networks still evaluates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import Config
from soilcast.contract import ANTECEDENT, OUTPUT_BY_LEAD, leads_of, network_and_feed, scored_name
from soilcast.evaluation.leads import best_references, lead_key, mean_over_leads, skill_vs_best
from soilcast.evaluation.metrics import METRICS, all_metrics, area_weights, finite_or_none
from soilcast.evaluation.seasons import season_rows
from soilcast.evaluation.summary import SUMMARY_METRICS, write_summary
from soilcast.layout import EvalDir, RunDir
from soilcast.records import ByLead, Leaderboard, RecordError, TrainRecord


def stale_reason(cfg: Config, store: Path, run: RunDir, name: str, tensors: Any) -> str | None:
    """Why the trained ``run`` of ``name`` must not be scored, or None when it is current."""
    from soilcast.ml.train import run_fingerprint

    path = run.record
    if not path.is_file():
        return f"{path} missing: the run did not finish (rerun `soilcast train --model {name}`)"
    try:
        record = TrainRecord.read(path)
    except RecordError as err:
        return f"{err}\n(rerun `soilcast train --model {name}`)"
    if record.fingerprint != run_fingerprint(cfg, name, tensors):
        return (f"{run.model} was trained with other params or data than the "
                f"current params.yaml and {store} (record fingerprint "
                f"{record.fingerprint[:12]}); rerun `soilcast train --model {name}`")
    return None


def basin_names(store: Path, basin_id: np.ndarray) -> dict[int, str]:
    """Basin id -> name from the tensor store's attributes (ids as names when absent)."""
    from soilcast.data.store import open_tensors

    names = {}
    try:
        names = {int(k): str(v) for k, v in open_tensors(store, load=False).attrs.get("basin_names", {}).items()}
    except FileNotFoundError:
        pass
    ids = sorted(int(b) for b in np.unique(basin_id) if b > 0)
    return {b: names.get(b, f"basin_{b}") for b in ids}


def by_lead(fc: Any, weights: np.ndarray, clim: Any, pers: Any, threshold: np.ndarray, rows: Any = slice(None),
            per_lead_rows: Any = None) -> ByLead:
    """Every registered metric and the probabilistic scores at each lead of ``fc``
    (``Forecasts``), on the windows ``rows`` (or ``per_lead_rows(k)`` when the rows depend on
    the lead's valid dates). ``threshold`` [N, K, H, W]: the D1-or-worse soil moisture of each
    window's valid day (the Brier score's event)."""
    from soilcast.evaluation.probabilistic import probabilistic_scores

    out: ByLead = {}
    cells = weights > 0  # only weighted cells count: score on them alone ([N, cells], same values)
    for k, lead in enumerate(fc.leads):
        r = per_lead_rows(k) if per_lead_rows is not None else rows
        obs, pred = fc.obs[r, k][:, cells], fc.pred[r, k][:, cells]
        block = all_metrics(obs, pred, weights[cells], clim=clim.pred[r, k][:, cells],
                            persistence=pers.pred[r, k][:, cells])
        q = None if fc.quantiles is None else np.moveaxis(fc.quantiles[r, k][..., cells], 1, -1).reshape(-1, len(fc.levels))
        w = np.broadcast_to(weights[cells], obs.shape).reshape(-1)
        block.update(probabilistic_scores(obs.reshape(-1), pred.reshape(-1), q, fc.levels or None, w,
                                          threshold[r, k][:, cells].reshape(-1)))
        out[lead_key(lead)] = finite_or_none(block)
    return out


def calibration_by_lead(fc: Any, weights: np.ndarray, threshold: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per lead key: the PIT histogram and the reliability diagram of "D1 or worse" of a
    probabilistic forecast (test years, every window); {} for a point forecast."""
    from soilcast.evaluation.probabilistic import calibration

    if fc.quantiles is None:
        return {}
    cells = weights > 0
    out = {}
    for k, lead in enumerate(fc.leads):
        obs = fc.obs[:, k][:, cells]
        q = np.moveaxis(fc.quantiles[:, k][..., cells], 1, -1).reshape(-1, len(fc.levels))
        w = np.broadcast_to(weights[cells], obs.shape).reshape(-1)
        out[lead_key(lead)] = _json_safe(calibration(obs.reshape(-1), q, fc.levels, w,
                                                     threshold[:, k][:, cells].reshape(-1)))
    return out


def _json_safe(value: Any) -> Any:
    """NaN -> None, numpy scalars -> floats, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None:
        return None
    v = float(value)
    return v if np.isfinite(v) else None


def valid_thresholds(tables: Any, fc: Any) -> np.ndarray:
    """[N, K, H, W] D1-or-worse soil moisture of each window's valid day at each lead."""
    from soilcast.contract import calendar_bin
    from soilcast.export.products import d1_threshold

    doy = np.stack([calendar_bin(fc.valid_time(k)) for k in range(len(fc.leads))], axis=1)  # [N, K]
    return d1_threshold(tables, doy).astype(np.float32)


def score(
    fc: Any, weights: np.ndarray, clim: Any, pers: Any, basins: dict[int, str], threshold: np.ndarray,
    seasons: Mapping[str, Sequence[int]], val: ByLead | None = None,
) -> dict[str, Any]:
    """Test metrics by lead (overall, per season of the valid date (``seasons``: params
    ``evaluation.seasons``), per basin) of one model, its calibration and its validation
    blocks. ``kind``: which registry the model is in."""
    from soilcast.ml.models.references import references

    by_season = [season_rows(fc.valid_time(k), seasons) for k in range(len(fc.leads))]
    return {
        "status": "ok",
        "kind": "reference" if fc.model in references() else "network",
        "feed": network_and_feed(fc.model)[1],
        "n_windows": int(fc.pred.shape[0]),
        "leads": [int(k) for k in fc.leads],
        "init_period": [str(fc.init_time[0].date()), str(fc.init_time[-1].date())],
        "overall": by_lead(fc, weights, clim, pers, threshold),
        "seasons": {s: by_lead(fc, weights, clim, pers, threshold, per_lead_rows=lambda k, s=s: by_season[k][s])
                    for s in seasons},
        "basins": {name: by_lead(fc, weights * (fc.basin_id == b), clim, pers, threshold)
                   for b, name in basins.items()},
        "val": val,
        "levels": list(fc.levels),
        "calibration": calibration_by_lead(fc, weights, threshold),
    }


def add_probabilistic_skills(entries: dict[str, Any]) -> None:
    """Into every block of every scored entry: CRPS skill against each probabilistic
    reference (``crps_skill_vs_<ref>``) and the Brier skill of "D1 or worse" against the
    climatological distribution (``brier_skill_d1``), both from the blocks' own scores at the
    same lead, basin, season and split."""
    from soilcast.evaluation.probabilistic import skill
    from soilcast.ml.models.references import probabilistic_benchmark_names

    refs = [n for n in probabilistic_benchmark_names() if entries.get(n, {}).get("status") == "ok"]
    clim_ref = CLIMATOLOGICAL_DISTRIBUTION if CLIMATOLOGICAL_DISTRIBUTION in refs else None

    def blocks(entry: dict[str, Any]) -> list[tuple[tuple[str, ...], ByLead]]:
        out = [(("overall",), entry["overall"])]
        out += [(("seasons", s), b) for s, b in entry["seasons"].items()]
        out += [(("basins", s), b) for s, b in entry["basins"].items()]
        return out + ([(("val",), entry["val"])] if entry.get("val") else [])

    def same(entry: dict[str, Any], where: tuple[str, ...]) -> ByLead:
        node: Any = entry
        for key in where:
            node = (node or {}).get(key, {})
        return node or {}

    for entry in entries.values():
        if entry.get("status") != "ok":
            continue
        for where, by_lead_ in blocks(entry):
            for key, block in by_lead_.items():
                for ref in refs:
                    other = same(entries[ref], where).get(key, {})
                    block[f"crps_skill_vs_{ref}"] = skill(block.get("crps"), other.get("crps"))
                if clim_ref:
                    other = same(entries[clim_ref], where).get(key, {})
                    block["brier_skill_d1"] = skill(block.get("brier_d1"), other.get("brier_d1"))


CLIMATOLOGICAL_DISTRIBUTION = "clim_distribution"  # the Brier skill's reference


def _context_names() -> dict[str, str]:
    """Names of the references the metrics take as context: {"clim": ..., "persistence": ...}."""
    from soilcast.ml.models.references import context_references

    return {key: ref.name for key, ref in context_references().items()}


def weather_sources(cfg: Config, archive: Any) -> dict[str, Any]:
    """How a network trained with the lead days' weather is fed when scored, beside past
    weather only: ``forecast`` = the forecast archive's runs for the window's init day (when
    an archive is given), ``perfect`` = the observed weather of the lead days (upper bound)."""
    from soilcast.forecasting import perfect_weather

    leads = tuple(cfg.window.leads)
    out: dict[str, Any] = {}
    if archive is not None and list(archive.variables) != cfg.variable_names:
        raise ValueError(f"{archive.path}: forecast variables {archive.variables} differ from params.yaml's "
                         f"{cfg.variable_names} (rerun `soilcast forecasts`)")
    if archive is not None:
        out["forecast"] = lambda block, ends: archive.lookup(block.time[ends], leads)
    out["perfect"] = lambda block, ends: perfect_weather(block.X, ends, leads)
    return out


def forecasters(cfg: Config, store: Path, tensors: Any, runs: Mapping[str, RunDir],
                archive: Any = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The references (each fitted once) and every current trained network as forecasters;
    skipped networks with why. Networks come in ``training.models`` order, then the other
    registered ones; a network trained with the lead days' weather also comes fed by each
    of :func:`weather_sources` (``convlstm+forecast``, ``convlstm+perfect``)."""
    from soilcast.ml.models import registry
    from soilcast.ml.models.references import reference_forecasters
    from soilcast.ml.predict import FeedGroup, KerasForecaster, reads_forecast_weather

    out: dict[str, Any] = dict(reference_forecasters(cfg, tensors))
    skipped: dict[str, str] = {}
    listed = list(dict.fromkeys(cfg.training.models))
    for name in listed + [n for n in registry.names() if n not in listed]:
        run = runs.get(name)
        if run is None or not run.model.is_file():
            where = run.model if run is not None else f"no run folder for {name}"
            skipped[name] = f"not trained: {where} missing"
            continue
        if (why := stale_reason(cfg, store, run, name, tensors)) is not None:
            skipped[name] = f"refused: {why}"
            continue
        if reads_forecast_weather(json.loads(run.grid.read_text())):
            out.update(FeedGroup(cfg, run, name, weather_sources(cfg, archive)).forecasters())
        else:
            out[name] = KerasForecaster(cfg, run, name)
    return out, skipped


def evaluate(cfg: Config, tensors: Path, runs: Mapping[str, RunDir], out: EvalDir,
             forecasts_store: Path | None = None) -> Leaderboard:
    """Score the references and the networks trained in ``runs`` (name -> run folder) on the
    tensor store ``tensors`` at every lead; write metrics, leaderboard and plots into ``out``;
    return the metrics. ``forecasts_store``: the forecast archive (``soilcast forecasts``)
    that networks trained with the lead days' weather are also scored with."""
    from soilcast.evaluation.plots import write_plots
    from soilcast.evaluation.uncertainty import write_uncertainty_plots
    from soilcast.io.atomic import atomic_write_text
    from soilcast.ml.predict import split_forecasts
    from soilcast.ml.train import load_tensors

    store = load_tensors(cfg, tensors)
    archive = None
    if forecasts_store is not None:
        from soilcast.data.forecast_store import open_forecasts

        archive = open_forecasts(forecasts_store)
    from soilcast.export.products import product_tables

    models, skipped = forecasters(cfg, tensors, store, runs, archive)
    tables = product_tables(cfg, store)  # the D1-or-worse thresholds, as the served products have them
    ctx = _context_names()
    val_fc = split_forecasts(cfg, store, models, "val")
    vclim, vpers = val_fc[ctx["clim"]], val_fc[ctx["persistence"]]
    vw, vthr = area_weights(vclim.lat, vclim.mask), valid_thresholds(tables, vclim)
    val = {n: by_lead(f, vw, vclim, vpers, vthr) for n, f in val_fc.items()}
    del val_fc, vclim, vpers
    forecasts = split_forecasts(cfg, store, models, "test")
    clim, pers = forecasts[ctx["clim"]], forecasts[ctx["persistence"]]
    weights, thr = area_weights(clim.lat, clim.mask), valid_thresholds(tables, clim)
    basins = basin_names(tensors, clim.basin_id)
    entries: dict[str, Any] = {
        name: score(fc, weights, clim, pers, basins, thr, cfg.evaluation.seasons, val.get(name)) for name, fc in forecasts.items()
    }
    add_probabilistic_skills(entries)
    entries.update({name: {"status": "skipped", "reason": why} for name, why in skipped.items()})
    metrics = Leaderboard.from_json(entries, "evaluation metrics")
    metrics.write(out.metrics)
    atomic_write_text(out.leaderboard, leaderboard(metrics, cfg.gate.primary_metric))
    write_summary(metrics, out.summary)
    write_plots(forecasts, metrics, basins, out.plots, cfg)
    write_uncertainty_plots(metrics, out.plots, cfg=cfg)
    return metrics


_COLUMNS = tuple(n for n, m in METRICS.items() if m.leaderboard)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def leaderboard(metrics: Leaderboard, primary: str) -> str:
    """Markdown: test scores by lead, best first (mean over leads of the skill against the
    best reference at each lead), references included; then every registered metric at
    each lead."""
    from soilcast.evaluation.uncertainty import uncertainty_table
    from soilcast.ml.models.references import benchmark_names

    ok, leads = metrics.scored(), metrics.leads()
    keys = [lead_key(k) for k in leads]
    best = best_references(metrics, benchmark_names())
    skill = {n: skill_vs_best(metrics, n, best, "test") for n in ok}
    mean = {n: mean_over_leads(skill[n]) for n in ok}
    order = sorted(ok, key=lambda n: (mean[n] is None, -(mean[n] or 0.0), n))
    head = "| rank | model | kind | " + " | ".join(f"lead {k}" for k in leads) + " | mean |"
    rule = "|---|---|---|" + "---|" * (len(leads) + 1)
    lines = [
        "# Test-period leaderboard by lead",
        "",
        "Area-weighted (cos latitude) over basin-mask cells; skill = 1 - MSE/MSE_reference; lead k = "
        "forecast valid k days after the last input day. Sorted by the mean over leads of the MSE skill "
        "against the best reference at each lead (the best of "
        f"{', '.join(benchmark_names())} on the validation years: "
        + ", ".join(f"lead {k}: {best.get(lead_key(k), 'n/a')}" for k in leads) + ").",
        "The gate selects on the validation years; test scores are for reporting.",
        "",
        "## Skill vs the best reference",
        "",
        head, rule,
    ]
    for rank, n in enumerate(order, 1):
        lines.append(f"| {rank} | {n} | {ok[n].kind} | " + " | ".join(_fmt(skill[n].get(k)) for k in keys)
                     + f" | {_fmt(mean[n])} |")
    lines += weather_table(metrics, keys, leads)
    lines += uncertainty_table(metrics)
    for metric in SUMMARY_METRICS:  # the headline tables: the metrics DVC's summary shows
        lines += ["", f"## {metric}", "", head, rule]
        for rank, n in enumerate(order, 1):
            vals = [ok[n].overall.get(k, {}).get(metric) for k in keys]
            finite = [v for v in vals if v is not None]
            avg = sum(finite) / len(finite) if len(finite) == len(vals) and vals else None
            lines.append(f"| {rank} | {n} | {ok[n].kind} | " + " | ".join(_fmt(v) for v in vals) + f" | {_fmt(avg)} |")
    lines += ["", f"## Every metric by lead (val {primary}: validation, for reference)", "",
              f"| model | lead | val {primary} | " + " | ".join(_COLUMNS) + " |",
              "|---|---|---|" + "---|" * len(_COLUMNS)]
    for n in order:
        for k in keys:
            o = ok[n].overall.get(k, {})
            v = (ok[n].val or {}).get(k, {}).get(primary)
            lines.append(f"| {n} | {k} | {_fmt(v)} | " + " | ".join(_fmt(o.get(c)) for c in _COLUMNS) + " |")
    skipped = metrics.skipped()
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {n}: {m.reason}" for n, m in skipped.items()]
    return "\n".join(lines) + "\n"


WEATHER_NOTES = {"past": "past weather only (serving_default)",
                 "forecast": "+ the forecast archive's runs (forecast_with_weather; servable)",
                 "perfect": "+ the observed weather of the lead days (upper bound, never served)"}


def weather_table(metrics: Leaderboard, keys: list[str], leads: list[int]) -> list[str]:
    """Markdown lines: each network trained with the lead days' weather, fed three ways
    (test skill vs climatology by lead); nothing when no network reads a forecast."""
    ok = metrics.scored()
    fed = sorted({network_and_feed(n)[0] for n, e in ok.items() if e.feed != "past"})
    if not fed:
        return []
    lines = ["", "## Weather of the lead days: skill vs climatology, three ways", "",
             "The same network without a forecast, with the forecast archive, and with perfect weather. "
             "The gate chooses between the first two on validation; perfect weather is the upper bound.", "",
             "| network | fed with | " + " | ".join(f"lead {k}" for k in leads) + " |",
             "|---|---|" + "---|" * len(leads)]
    for net in fed:
        for feed, note in WEATHER_NOTES.items():
            name = scored_name(net, feed)
            if name in ok:
                vals = [ok[name].overall.get(k, {}).get("skill_vs_climatology") for k in keys]
                lines.append(f"| {net} | {note} | " + " | ".join(_fmt(v) for v in vals) + " |")
    return lines


def other_inputs(cfg: Config, version_dir: Path, meta: Mapping[str, Any]) -> str | None:
    """Why the champion's inputs differ from params' variables, or None when they match."""
    if "variables" not in meta:
        raise ValueError(f"{version_dir}: metadata has no 'variables' (a broken bundle)")
    theirs = list(meta["variables"])
    if theirs == cfg.variable_names:
        return None
    return (f"the champion was trained on other inputs {theirs} than params.yaml's variables "
            f"{cfg.variable_names}")


def savedmodel_forecaster(cfg: Config, version_dir: Path, meta: Mapping[str, Any], archive: Any = None) -> Any:
    """A served SavedModel as a Forecaster over its own leads, fed as it is served: a version
    the gate chose WITH the forecast archive (metadata ``served_feed: forecast``) answers
    through ``forecast_with_weather`` with ``archive``'s runs; any other through
    ``serving_default`` (an export from before the lead axis forecasts its one lead through
    ``soil_moisture``); the forecaster's ``weather`` is set exactly when it is fed runs."""
    import tensorflow as tf

    from soilcast.contract import OUTPUT, WEATHER_SIGNATURE
    from soilcast.forecasting import InputForecaster

    signatures = tf.saved_model.load(str(version_dir)).signatures
    leads = tuple(leads_of(meta))
    fed = meta.get("served_feed") == "forecast" and archive is not None and WEATHER_SIGNATURE in signatures
    fn = signatures[WEATHER_SIGNATURE if fed else "serving_default"]
    key = OUTPUT_BY_LEAD if OUTPUT_BY_LEAD in fn.structured_outputs else OUTPUT
    weather = weather_sources(cfg, archive)["forecast"] if fed else None

    def predict(x: dict[str, np.ndarray]) -> np.ndarray:
        return fn(**{k: tf.constant(v) for k, v in x.items()})[key].numpy()

    return InputForecaster(f"champion v{version_dir.name}", leads, predict, int(meta["seq_len"]),
                           bool(meta.get(ANTECEDENT)), cfg.training.batch_size, weather)


def score_savedmodel(cfg: Config, store: Path, version_dir: Path, split: str = "val",
                     forecasts: Path | None = None) -> ByLead:
    """Re-score a served SavedModel on the windows of ``split`` of the tensor ``store`` at
    each of ITS leads (overall, area-weighted, by lead key), fed as it is served (with the
    ``forecasts`` store's runs when the gate chose it with them); the gate compares it with
    the candidates on the validation years at the leads both forecast."""
    from soilcast.data.store import open_tensors
    from soilcast.forecasting import observations
    from soilcast.ml.windows import load_split_block
    from soilcast.repository.versions import read_metadata

    meta = read_metadata(version_dir)
    t = open_tensors(store, load=False)
    if (why := other_inputs(cfg, version_dir, meta)) is not None:
        raise ValueError(f"{version_dir}: {why}")
    if [len(meta["grid"]["lat"]), len(meta["grid"]["lon"])] != list(t.mask.shape) or int(meta["seq_len"]) != cfg.window.seq_len:
        raise ValueError(
            f"{version_dir}: champion grid {len(meta['grid']['lat'])}x{len(meta['grid']['lon'])} / "
            f"seq_len {meta['seq_len']} does not match the data {t.mask.shape} / {cfg.window.seq_len}"
        )
    archive = None
    if forecasts is not None and meta.get("served_feed") == "forecast":
        from soilcast.data.forecast_store import open_forecasts

        archive = open_forecasts(forecasts)
    champion = savedmodel_forecaster(cfg, version_dir, meta, archive)
    unknown = [k for k in champion.leads if k > cfg.window.max_lead]
    if unknown:
        raise ValueError(f"{version_dir}: champion leads {unknown} lie beyond params' window.leads {cfg.window.leads}")
    block, ends = load_split_block(cfg, t, split)
    pred, obs = champion.forecast(block, ends), observations(block, ends, champion.leads)
    w = area_weights(t.lat, t.mask)
    return {lead_key(k): finite_or_none(all_metrics(obs[:, i], pred[:, i], w)) for i, k in enumerate(champion.leads)}
