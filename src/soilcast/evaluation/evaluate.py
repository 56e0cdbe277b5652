"""Score every model on the test years: overall, per basin and per season, plus plots.

All models are scored on the same test windows (``soilcast.ml.predict.predict_split``) over
mask cells only, weighted by cos(latitude) so a cell counts by its area. Seasons split the
forecast (valid) dates into the JJAS south-west monsoon and the rest of the year. Skill
scores use the two reference forecasts (persistence, training-period climatology), and the
anomaly correlation is taken against that same climatology.

A network with no trained run under ``artifacts/train/<name>/`` is reported as skipped,
so a config that trains only some networks still evaluates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from soilcast.config import NETWORKS, REFERENCES, Config
from soilcast.contract import ANTECEDENT, OUTPUT
from soilcast.evaluation.metrics import all_metrics, area_weights, finite_or_none

MONSOON_MONTHS = (6, 7, 8, 9)  # JJAS: the Indian south-west monsoon, by definition
SEASONS = ("monsoon_jjas", "rest")


def eval_dir(cfg: Config) -> Path:
    return cfg.paths.artifacts_dir / "eval"


def is_trained(cfg: Config, name: str) -> bool:
    return (cfg.paths.artifacts_dir / "train" / name / "model.keras").is_file()


def season_rows(valid_time: Any) -> dict[str, np.ndarray]:
    monsoon = np.isin(np.asarray(valid_time.month), MONSOON_MONTHS)
    return {"monsoon_jjas": monsoon, "rest": ~monsoon}


def basin_names(cfg: Config, basin_id: np.ndarray) -> dict[int, str]:
    """Basin id -> name from the tensor store's attributes (ids as names when absent)."""
    from soilcast.data.store import open_tensors

    names = {}
    try:
        names = {int(k): str(v) for k, v in open_tensors(cfg.paths.processed, load=False).attrs.get("basin_names", {}).items()}
    except FileNotFoundError:
        pass
    ids = sorted(int(b) for b in np.unique(basin_id) if b > 0)
    return {b: names.get(b, f"basin_{b}") for b in ids}


def score(
    fc: Any, weights: np.ndarray, clim: Any, pers: Any, basins: dict[int, str]
) -> dict[str, Any]:
    """Overall / per-season / per-basin metrics of one model's forecasts."""

    def block(rows: np.ndarray | slice, w: np.ndarray) -> dict[str, Any]:
        return finite_or_none(
            all_metrics(fc.obs[rows], fc.pred[rows], w, clim=clim.pred[rows], persistence=pers.pred[rows])
        )

    everything = slice(None)
    return {
        "status": "ok",
        "kind": "reference" if fc.model in REFERENCES else "network",
        "n_windows": int(fc.pred.shape[0]),
        "valid_period": [str(fc.valid_time[0].date()), str(fc.valid_time[-1].date())],
        "overall": block(everything, weights),
        "seasons": {s: block(rows, weights) for s, rows in season_rows(fc.valid_time).items()},
        "basins": {name: block(everything, weights * (fc.basin_id == b)) for b, name in basins.items()},
    }


def _check_aligned(ref: Any, fc: Any) -> None:
    if fc.pred.shape != ref.pred.shape or not fc.valid_time.equals(ref.valid_time):
        raise ValueError(
            f"forecasts of {fc.model} ({fc.pred.shape}, {fc.valid_time[0]}..{fc.valid_time[-1]}) "
            f"do not cover the same test windows as {ref.model} ({ref.pred.shape})"
        )


def collect_forecasts(cfg: Config) -> tuple[dict[str, Any], dict[str, str]]:
    """Test-split forecasts of the references and every trained network; skipped ones with why."""
    from soilcast.ml.predict import predict_split

    forecasts = {name: predict_split(cfg, name, "test") for name in REFERENCES}
    skipped: dict[str, str] = {}
    for name in NETWORKS:
        if not is_trained(cfg, name):
            skipped[name] = f"not trained: {cfg.paths.artifacts_dir / 'train' / name / 'model.keras'} missing"
            continue
        forecasts[name] = predict_split(cfg, name, "test")
        _check_aligned(forecasts["climatology"], forecasts[name])
    return forecasts, skipped


def evaluate(cfg: Config) -> dict[str, Any]:
    """Score all models; write metrics.json, leaderboard.md and plots; return the metrics."""
    from soilcast.evaluation.plots import write_plots
    from soilcast.io.atomic import atomic_write_json, atomic_write_text

    forecasts, skipped = collect_forecasts(cfg)
    clim, pers = forecasts["climatology"], forecasts["persistence"]
    weights = area_weights(clim.lat, clim.mask)
    basins = basin_names(cfg, clim.basin_id)
    metrics: dict[str, Any] = {name: score(fc, weights, clim, pers, basins) for name, fc in forecasts.items()}
    metrics.update({name: {"status": "skipped", "reason": why} for name, why in skipped.items()})
    out = eval_dir(cfg)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "leaderboard.md", leaderboard(metrics, cfg.gate.primary_metric))
    write_plots(forecasts, metrics, basins, out / "plots")
    return metrics


_COLUMNS = ("rmse", "mae", "bias", "ubrmse", "r2", "nse", "kge", "pearson_r", "acc",
            "skill_vs_climatology", "skill_vs_persistence")


def leaderboard(metrics: dict[str, Any], primary: str) -> str:
    """Markdown table of overall test metrics, best ``primary`` first, references included."""
    ok = {n: m for n, m in metrics.items() if m.get("status") == "ok"}
    inf = float("inf")
    order = sorted(ok, key=lambda n: (ok[n]["overall"].get(primary) is None, ok[n]["overall"].get(primary) or inf, n))
    lines = [
        f"# Test-period leaderboard (sorted by {primary}, lower is better)",
        "",
        "Area-weighted (cos latitude) over basin-mask cells; skill = 1 - MSE/MSE_reference.",
        "",
        "| rank | model | kind | " + " | ".join(_COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(_COLUMNS),
    ]
    for rank, name in enumerate(order, 1):
        o = ok[name]["overall"]
        cells = ["n/a" if o.get(c) is None else f"{o[c]:.4f}" for c in _COLUMNS]
        lines.append(f"| {rank} | {name} | {ok[name]['kind']} | " + " | ".join(cells) + " |")
    skipped = {n: m for n, m in metrics.items() if m.get("status") != "ok"}
    if skipped:
        lines += ["", "Skipped:", ""] + [f"- {n}: {m.get('reason')}" for n, m in skipped.items()]
    return "\n".join(lines) + "\n"


def window_inputs(cfg: Config, tensors: Any, ends: np.ndarray, antecedent: bool) -> dict[str, np.ndarray]:
    """Physical-unit serving inputs for the windows ending at ``ends`` (windows' convention)."""
    from soilcast.contract import serving_inputs

    return serving_inputs(tensors.X, tensors.Y, ends, cfg.window.seq_len, antecedent)


def score_savedmodel(cfg: Config, version_dir: Path) -> dict[str, float]:
    """Re-score a served SavedModel on the current test windows (overall, area-weighted)."""
    import tensorflow as tf

    from soilcast.data.store import open_tensors
    from soilcast.export.versions import read_metadata

    meta = read_metadata(version_dir)
    t = open_tensors(cfg.paths.processed, load=False)
    if [len(meta["grid"]["lat"]), len(meta["grid"]["lon"])] != list(t.mask.shape) or int(meta["seq_len"]) != cfg.window.seq_len:
        raise ValueError(
            f"{version_dir}: champion grid {len(meta['grid']['lat'])}x{len(meta['grid']['lon'])} / "
            f"seq_len {meta['seq_len']} does not match the data {t.mask.shape} / {cfg.window.seq_len}"
        )
    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    block, ends = load_test_block(cfg, t)
    lead, b = cfg.window.lead_days, cfg.training.batch_size
    preds = []
    for i in range(0, len(ends), b):
        batch = window_inputs(cfg, block, ends[i : i + b], bool(meta.get(ANTECEDENT)))
        preds.append(fn(**{k: tf.constant(v) for k, v in batch.items()})[OUTPUT].numpy())
    obs = np.asarray(block.Y[ends + lead, ..., 0], dtype=np.float32)
    return finite_or_none(all_metrics(obs, np.concatenate(preds), area_weights(t.lat, t.mask)))


def load_test_block(cfg: Config, t: Any) -> tuple[Any, np.ndarray]:
    """The days the test windows touch, loaded once (a lazy store is read in one go), and
    the window ends re-indexed into that block."""
    from dataclasses import replace

    from soilcast.ml.windows import split_ends

    ends = split_ends(cfg, t.time, "test")
    lo, hi = int(ends[0]) - cfg.window.seq_len + 1, int(ends[-1]) + cfg.window.lead_days + 1
    block = replace(t, X=np.asarray(t.X[lo:hi]), Y=np.asarray(t.Y[lo:hi]), time=t.time[lo:hi])
    return block, ends - lo


def load_metrics(cfg: Config) -> dict[str, Any]:
    path = eval_dir(cfg) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: evaluation metrics not found (run the 'evaluate' stage first)")
    return json.loads(path.read_text())
