"""Score every model on the validation and test years: overall, per basin and per season.

Two splits, two purposes: the VALIDATION scores (``val``) are what model selection and the
gate use; the TEST scores (``overall``, ``seasons``, ``basins``) are for reporting only.
The references persistence, climatology and linear (a per-cell ridge regression) are scored
beside every network. A network whose training record does not match the current config
and tensor store (a leftover of an earlier run) is refused, not scored, and the reason is
written into the metrics file and the leaderboard.

All models are scored on the same windows (``soilcast.ml.predict.predict_split``) over
mask cells only, weighted by cos(latitude) so a cell counts by its area. Seasons split the
forecast (valid) dates into the JJAS south-west monsoon and the rest of the year. Skill
scores use the two reference forecasts (persistence, training-period climatology), and the
anomaly correlation is taken against that same climatology.

A network with no trained run folder among the ``runs`` given is reported as skipped, so a
config that trains only some networks still evaluates.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import Config
from soilcast.contract import ANTECEDENT, OUTPUT
from soilcast.evaluation.metrics import METRICS, all_metrics, area_weights, finite_or_none
from soilcast.evaluation.seasons import season_rows
from soilcast.layout import EvalDir, RunDir
from soilcast.ml.windows import load_split_block, window_inputs
from soilcast.records import Leaderboard, RecordError, TrainRecord


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


def score(
    fc: Any, weights: np.ndarray, clim: Any, pers: Any, basins: dict[int, str], val: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Overall / per-season / per-basin test metrics of one model, and its validation block.
    ``kind``: which registry the model is in (a reference forecaster or a network)."""
    from soilcast.ml.models.references import references

    def block(rows: np.ndarray | slice, w: np.ndarray) -> dict[str, Any]:
        return finite_or_none(
            all_metrics(fc.obs[rows], fc.pred[rows], w, clim=clim.pred[rows], persistence=pers.pred[rows])
        )

    everything = slice(None)
    return {
        "status": "ok",
        "kind": "reference" if fc.model in references() else "network",
        "n_windows": int(fc.pred.shape[0]),
        "valid_period": [str(fc.valid_time[0].date()), str(fc.valid_time[-1].date())],
        "overall": block(everything, weights),
        "seasons": {s: block(rows, weights) for s, rows in season_rows(fc.valid_time).items()},
        "basins": {name: block(everything, weights * (fc.basin_id == b)) for b, name in basins.items()},
        "val": val,
    }


def overall_block(fc: Any, weights: np.ndarray, clim: Any, pers: Any) -> dict[str, Any]:
    return finite_or_none(all_metrics(fc.obs, fc.pred, weights, clim=clim.pred, persistence=pers.pred))


def _check_aligned(ref: Any, fc: Any) -> None:
    if fc.pred.shape != ref.pred.shape or not fc.valid_time.equals(ref.valid_time):
        raise ValueError(
            f"forecasts of {fc.model} ({fc.pred.shape}, {fc.valid_time[0]}..{fc.valid_time[-1]}) "
            f"do not cover the same test windows as {ref.model} ({ref.pred.shape})"
        )


def _context_names() -> dict[str, str]:
    """Names of the references the metrics take as context: {"clim": ..., "persistence": ...}."""
    from soilcast.ml.models.references import context_references

    return {key: ref.name for key, ref in context_references().items()}


def collect_forecasts(cfg: Config, store: Path, runs: Mapping[str, RunDir],
                      split: str = "test") -> tuple[dict[str, Any], dict[str, str]]:
    """Forecasts of the references and every current trained network; skipped ones with why.
    Networks come in ``training.models`` order, then the other registered ones."""
    from soilcast.ml.models import registry
    from soilcast.ml.models.references import references
    from soilcast.ml.predict import predict_split
    from soilcast.ml.train import load_tensors

    forecasts = {name: predict_split(cfg, store, name, split) for name in references()}
    clim = forecasts[_context_names()["clim"]]
    tensors = load_tensors(cfg, store)
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
        forecasts[name] = predict_split(cfg, store, name, split, run)
        _check_aligned(clim, forecasts[name])
    return forecasts, skipped


def evaluate(cfg: Config, tensors: Path, runs: Mapping[str, RunDir], out: EvalDir) -> Leaderboard:
    """Score the references and the networks trained in ``runs`` (name -> run folder) on the
    tensor store ``tensors``; write metrics, leaderboard and plots into ``out``; return the metrics."""
    from soilcast.evaluation.plots import write_plots
    from soilcast.io.atomic import atomic_write_text

    ctx = _context_names()
    val_fc, _ = collect_forecasts(cfg, tensors, runs, "val")
    vclim, vpers = val_fc[ctx["clim"]], val_fc[ctx["persistence"]]
    vw = area_weights(vclim.lat, vclim.mask)
    val = {n: overall_block(f, vw, vclim, vpers) for n, f in val_fc.items()}
    del val_fc, vclim, vpers
    forecasts, skipped = collect_forecasts(cfg, tensors, runs, "test")
    clim, pers = forecasts[ctx["clim"]], forecasts[ctx["persistence"]]
    weights = area_weights(clim.lat, clim.mask)
    basins = basin_names(tensors, clim.basin_id)
    entries: dict[str, Any] = {
        name: score(fc, weights, clim, pers, basins, val.get(name)) for name, fc in forecasts.items()
    }
    entries.update({name: {"status": "skipped", "reason": why} for name, why in skipped.items()})
    metrics = Leaderboard.from_json(entries, "evaluation metrics")
    metrics.write(out.metrics)
    atomic_write_text(out.leaderboard, leaderboard(metrics, cfg.gate.primary_metric))
    write_plots(forecasts, metrics, basins, out.plots, cfg.target.colormap)
    return metrics


_COLUMNS = tuple(n for n, m in METRICS.items() if m.leaderboard)


def leaderboard(metrics: Leaderboard, primary: str) -> str:
    """Markdown table of overall test metrics, best ``primary`` first, references included."""
    ok = metrics.scored()
    inf = float("inf")
    order = sorted(ok, key=lambda n: (ok[n].overall.get(primary) is None, ok[n].overall.get(primary) or inf, n))
    lines = [
        f"# Test-period leaderboard (sorted by {primary}, lower is better)",
        "",
        "Area-weighted (cos latitude) over basin-mask cells; skill = 1 - MSE/MSE_reference.",
        f"The gate selects on the validation years (`val {primary}`); test scores are for reporting.",
        "",
        f"| rank | model | kind | val {primary} | " + " | ".join(_COLUMNS) + " |",
        "|---|---|---|---|" + "---|" * len(_COLUMNS),
    ]
    for rank, name in enumerate(order, 1):
        o = ok[name].overall
        v = (ok[name].val or {}).get(primary)
        cells = ["n/a" if o.get(c) is None else f"{o[c]:.4f}" for c in _COLUMNS]
        lines.append(f"| {rank} | {name} | {ok[name].kind} | {'n/a' if v is None else f'{v:.4f}'} | "
                     + " | ".join(cells) + " |")
    skipped = metrics.skipped()
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {n}: {m.reason}" for n, m in skipped.items()]
    return "\n".join(lines) + "\n"


def other_inputs(cfg: Config, version_dir: Path, meta: Mapping[str, Any]) -> str | None:
    """Why the champion's inputs differ from params' variables, or None when they match."""
    if "variables" not in meta:
        raise ValueError(f"{version_dir}: metadata has no 'variables' (a broken bundle)")
    theirs = list(meta["variables"])
    if theirs == cfg.variable_names:
        return None
    return (f"the champion was trained on other inputs {theirs} than params.yaml's variables "
            f"{cfg.variable_names}")


def score_savedmodel(cfg: Config, store: Path, version_dir: Path, split: str = "val") -> dict[str, float]:
    """Re-score a served SavedModel on the windows of ``split`` of the tensor ``store``
    (overall, area-weighted); the gate compares it with candidates on the validation years."""
    import tensorflow as tf

    from soilcast.data.store import open_tensors
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
    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    block, ends = load_split_block(cfg, t, split)
    lead, b = cfg.window.lead_days, cfg.training.batch_size
    preds = []
    for i in range(0, len(ends), b):
        batch = window_inputs(cfg, block, ends[i : i + b], bool(meta.get(ANTECEDENT)))
        preds.append(fn(**{k: tf.constant(v) for k, v in batch.items()})[OUTPUT].numpy())
    obs = np.asarray(block.Y[ends + lead, ..., 0], dtype=np.float32)
    return finite_or_none(all_metrics(obs, np.concatenate(preds), area_weights(t.lat, t.mask)))
