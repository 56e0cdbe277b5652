"""Train one network: ``train_model(cfg, name, tensors, run) -> run`` (a :class:`RunDir`).

Why it is organised this way:

* Train as you serve: ``training.patch_size: 0`` trains on the full grid, the grid the
  model serves (spatial networks then see the same zero padding and BatchNorm statistics in
  training and at inference). Patches remain possible for grids too large for memory.
  Validation always runs on the FULL grid with a twin network built for it (ConvLSTM2D
  needs static spatial shapes; weights are copied each epoch); the twin is what is saved
  as the run's model file.
* A fixed budget: ``epochs x steps_per_epoch`` optimizer steps under a linear warm-up then
  cosine decay to zero. No plateau heuristics: model selection keeps the epoch with the
  lowest validation MSE of the forecast step (``val_forecast_mse``, the step that is scored
  and served), computed exactly over all chosen windows.
* persistence and climatology are scored on the SAME validation windows in the same
  target space, so the run's record says at once whether the network has skill.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd

from soilcast.config import Config
from soilcast.data.store import Tensors, open_tensors
from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text
from soilcast.layout import RunDir
from soilcast.ml.checkpoint import (
    BestWeights,
    EpochCheckpoint,
    best_weights,
    fingerprint,
    load_state,
    restore_model,
)
from soilcast.ml.distribute import get_distribution
from soilcast.ml.losses import ForecastMSE, masked_sums, median_channels, training_loss
from soilcast.ml.models import registry
from soilcast.ml.models.references import Reference, references
from soilcast.ml.models.registry import build_model
from soilcast.ml.precision import with_resolved_precision
from soilcast.ml.scaling import Scaler
from soilcast.ml.windows import (
    Prepared,
    WindowDataset,
    check_daily,
    evenly_spaced,
    gather,
    n_input_channels,
    prepare,
    split_ends,
    split_slice,
)
from soilcast.records import TrainRecord

HISTORY_COLUMNS = ["epoch", "loss", "forecast_mse", "val_loss", "val_forecast_mse", "learning_rate", "seconds"]
SELECT_ON = "val_forecast_mse"


def load_tensors(cfg: Config, store: Path) -> Tensors:
    """Open the tensor ``store`` and check it matches what the config promises."""
    t = open_tensors(store)
    src = str(store)
    if t.variables != cfg.variable_names:
        raise ValueError(f"{src}: variables {t.variables} differ from params.yaml {cfg.variable_names}")
    if t.X.ndim != 4 or t.Y.shape != t.X.shape[:3] + (1,) or t.mask.shape != t.X.shape[1:3]:
        raise ValueError(f"{src}: expected X [T,H,W,C], Y [T,H,W,1], mask [H,W]; got "
                         f"{t.X.shape}, {t.Y.shape}, {t.mask.shape}")
    check_daily(t.time, src)
    return t


def fit_scaler(cfg: Config, t: Tensors) -> Scaler:
    return Scaler.fit(t.X, t.Y, t.mask, split_slice(t.time, cfg.split.train_years), cfg)


def run_fingerprint(cfg: Config, name: str, t: Tensors) -> str:
    """Hash of everything a trained run depends on: the config sections it reads and the
    store's input hashes and the shape of its period. Evaluation refuses a model whose record
    differs."""
    d = cfg.to_dict()
    parts = {k: d[k] for k in ("seed", "split", "window", "scaling", "training")}
    parts["variables"] = [v.science_dict() for v in cfg.variables]  # a new colour map retrains nothing
    parts["target"] = cfg.target.science_dict()
    parts["model"] = {"name": name, **d["models"][name]}
    parts["forecast"] = d["forecast"]  # quantile levels and the head that spreads the median
    if cfg.window.uses_forecast_weather:  # how the lead days' weather is read and made
        parts["forecast_weather"] = {k: d[k] for k in ("forecast_head", "forecast_error")}
        if cfg.sources.forecast is not None and cfg.sources.forecast.train_on_archive:
            parts["forecast_weather"]["archive"] = d["sources"]["forecast"]
    parts["data"] = t.attrs.get("input_hashes")
    # what training and evaluation read: the period's days (days ingested after period.end
    # belong to no split, so the daily loop's ingest leaves every trained run current)
    in_period = (t.time >= pd.Timestamp(cfg.period.start)) & (t.time <= pd.Timestamp(cfg.period.end))
    parts["shape"] = [int(in_period.sum()), *t.X.shape[1:]]
    return fingerprint(parts)


class FullGridValidation(keras.callbacks.Callback):
    """Copy weights into the full-grid twin and put exact val metrics into the epoch logs."""

    def __init__(self, twin: keras.Model, val: WindowDataset, history: list[dict[str, float]],
                 levels: list[float]):
        super().__init__()
        self.twin, self.val, self.history, self.levels = twin, val, history, levels
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        self.twin.set_weights(self.model.get_weights())
        scores = score_network(self.twin, self.val, self.levels)
        logs["val_loss"], logs["val_forecast_mse"] = scores["window_mse"], scores["forecast_mse"]
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer._get_current_learning_rate()))
        row = {"epoch": epoch + 1, "learning_rate": lr, "seconds": time.perf_counter() - self._t0}
        row.update({k: float(logs[k]) for k in ("loss", "forecast_mse", "val_loss", "val_forecast_mse") if k in logs})
        self.history.append(row)


def score_network(model: keras.Model, ds: WindowDataset, levels: list[float]) -> dict[str, float]:
    """Exact masked MSE of the median (scaled space, mean over leads) over every window of
    ``ds``: the whole window and the forecast step."""
    acc = np.zeros(4)
    for i in range(len(ds)):
        x, y = ds[i]
        pred = median_channels(np.asarray(model.predict_on_batch(x)), levels)
        acc += [*masked_sums(y[..., :-1], pred, y[..., -1:]),
                *masked_sums(y[:, -1:, ..., :-1], pred[:, -1:], y[:, -1:, ..., -1:])]
    return {"window_mse": acc[0] / max(acc[1], 1.0), "forecast_mse": acc[2] / max(acc[3], 1.0)}


def training_references() -> dict[str, Reference]:
    """The references scored beside every network during training (those with a target space)."""
    return {n: r for n, r in references().items() if r.target_space is not None}


def reference_targets(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler, ends: np.ndarray) -> dict[str, np.ndarray]:
    """The training references as forecasts in the networks' target space, [N, L, H, W, K]
    aligned with the target windows of ``ends`` (step j: input day s = t-L+1+j)."""
    L = cfg.window.seq_len
    return {name: gather(np.asarray(ref.target_space(cfg, t, data, scaler), np.float32), ends, -L + 1, L)
            for name, ref in training_references().items()}


def score_references(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler, ends: np.ndarray) -> dict[str, dict[str, float]]:
    """The training references on the given windows, target space, like score_network."""
    L = cfg.window.seq_len
    target = gather(data.targets, ends, -L + 1, L)  # [N, L, H, W, K]
    w = np.broadcast_to(data.weight[..., None], target.shape)
    out: dict[str, dict[str, float]] = {}
    for name, pred in reference_targets(cfg, t, data, scaler, ends).items():
        sw, nw = masked_sums(target, pred, w)
        sf, nf = masked_sums(target[:, -1], pred[:, -1], w[:, -1])
        out[name] = {"window_mse": sw / max(nw, 1.0), "forecast_mse": sf / max(nf, 1.0)}
    return out


def learning_rate_schedule(cfg: Config, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to ``learning_rate``, then cosine decay to 0 at the end of the budget."""
    p = cfg.training
    total = p.epochs * steps_per_epoch
    warmup = min(p.warmup_steps, max(total - 1, 0))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else p.learning_rate,
        decay_steps=max(total - warmup, 1),
        warmup_target=p.learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def _compile(model: keras.Model, cfg: Config, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate_schedule(cfg, steps_per_epoch)),
        loss=training_loss(cfg.forecast.quantiles, cfg.forecast.median_mse_weight),
        metrics=[ForecastMSE(cfg.forecast.quantiles)],
    )


def train_model(
    cfg: Config,
    name: str,
    tensors: Path,
    run: RunDir,
    *,
    resume: bool = True,
    verbose: Any = "auto",
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
    forecasts: Path | None = None,
) -> Path:
    """Train network ``name`` on the tensor store ``tensors``; write the model, record,
    scaling, grid, history, learning curve and checkpoints into ``run`` (returns its folder).
    ``forecasts``: the forecast store a run with ``sources.forecast.train_on_archive`` trains on."""
    registry.get(name)  # unknown names fail here, naming the registered networks
    dist = get_distribution()  # before any TensorFlow op (multi-worker requirement)
    final_dir = Path(run.root)
    out = final_dir if dist.is_chief else Path(tempfile.mkdtemp(prefix=f"soilcast-worker{dist.worker_index}-"))
    try:
        return _train(cfg, name, Path(tensors), dist, final_dir, out, resume, verbose, callbacks, forecasts)
    finally:
        if out != final_dir:
            shutil.rmtree(out, ignore_errors=True)


def archive_lookup(cfg: Config, t: Tensors, forecasts: Path | None) -> Any:
    """Window ends -> the forecast store's runs for their init days, when the config trains
    on a reforecast archive (``sources.forecast.train_on_archive``); else None."""
    src = cfg.sources.forecast
    if not cfg.window.uses_forecast_weather or src is None or not src.train_on_archive:
        return None
    if forecasts is None:
        raise ValueError("sources.forecast.train_on_archive is true: give the forecast store (--forecasts)")
    from soilcast.data.forecast_store import open_forecasts

    archive, leads = open_forecasts(forecasts), tuple(cfg.window.leads)
    archive.lookup(t.time[split_ends(cfg, t.time, "train")], leads)  # every training day is there, or fail now
    return lambda ends: archive.lookup(t.time[ends], leads)


def _train(cfg, name, store: Path, dist, final_dir: Path, out: Path, resume, verbose, extra, forecasts=None) -> Path:
    setting = cfg  # as params.yaml says (precision may be auto): what evaluation checks
    cfg = with_resolved_precision(cfg)  # auto -> this host's policy: built, checkpointed, recorded
    t = load_tensors(cfg, store)
    scaler = fit_scaler(cfg, t)
    data = prepare(t, cfg, scaler, weather=True, archive=archive_lookup(cfg, t, forecasts))
    T, H, W, _ = t.X.shape
    L, C, batch = cfg.window.seq_len, n_input_channels(cfg), cfg.training.batch_size
    train_ends = split_ends(cfg, t.time, "train")
    val_all = split_ends(cfg, t.time, "val")
    val_ends = evenly_spaced(val_all, cfg.training.validation_steps * batch or len(val_all))
    steps = cfg.training.steps_per_epoch or math.ceil(len(train_ends) / batch)

    fp = run_fingerprint(setting, name, t)
    # a checkpoint resumes only under the same resolved precision (another host may differ)
    ckpt_fp = fingerprint({"run": fp, "precision": cfg.training.precision})
    ckpt_dir = RunDir(final_dir).checkpoints
    state = load_state(ckpt_dir, ckpt_fp) if resume else None
    if state is None and dist.is_chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    initial_epoch = state[0]["epochs_done"] if state else 0
    history: list[dict[str, float]] = list(state[0]["history"]) if state else []

    train_ds = WindowDataset(data, train_ends, cfg, train=True, steps=steps,
                             start_epoch=initial_epoch, patch=cfg.training.patch_size)
    val_ds = WindowDataset(data, val_ends, cfg, train=False)
    ph, pw = train_ds.patch

    keras.utils.set_random_seed(cfg.seed)
    with dist.scope():
        model = build_model(name, cfg, (L, ph, pw, C))
        _compile(model, cfg, steps)
        if state:
            restore_model(model, state[1])
    twin = build_model(name, cfg, (L, H, W, C))  # full grid, local (outside the strategy)

    best_cb = BestWeights(SELECT_ON)
    ckpt = EpochCheckpoint(ckpt_dir, ckpt_fp, best_cb, state, history, write=dist.is_chief)
    cbs = [FullGridValidation(twin, val_ds, history, cfg.forecast.quantiles), best_cb, ckpt, *extra]

    t0 = time.perf_counter()
    if initial_epoch < cfg.training.epochs:
        model.fit(train_ds, epochs=cfg.training.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, callbacks=cbs, verbose=verbose, shuffle=False)
    elif state and best_weights(state[1]):  # killed after the last epoch, before the end
        model.set_weights(best_weights(state[1]))
        best_cb.best_epoch = state[0]["best"]["epoch"]
    wall = time.perf_counter() - t0
    if dist.is_chief:
        ckpt.set_model(model)
        ckpt.save(len(history), complete=True)

    twin.set_weights(model.get_weights())
    best = score_network(twin, val_ds, cfg.forecast.quantiles)
    refs = score_references(cfg, t, data, scaler, val_ends)
    epochs_run = len(history) - initial_epoch
    record = TrainRecord.from_json({
        "model": name,
        "config": cfg.to_dict(),
        "data": {"store": str(store), "input_hashes": t.attrs.get("input_hashes"),
                 "shape": list(t.X.shape)},
        "fingerprint": fp,
        "epochs": len(history),
        "epochs_this_run": epochs_run,
        "resumed_from_epoch": initial_epoch,
        "best_epoch": best_cb.best_epoch,
        "selected_on": SELECT_ON,
        "steps_per_epoch": steps,
        "batch_size": batch,
        "patch": [ph, pw],
        "train_windows": len(train_ends),
        "val_windows": len(val_ends),
        "wall_time_s": wall,
        "samples_per_s": epochs_run * steps * batch / wall if wall > 0 and epochs_run else None,
        "params": int(model.count_params()),
        "precision": cfg.training.precision,
        "distribution": {"kind": dist.kind, "replicas": dist.replicas},
        "keras_backend": keras.backend.backend(),
        "keras_version": keras.__version__,
        "best_val_forecast_mse": best["forecast_mse"],
        "target": cfg.window.target,
        "val": {name: best, **refs},
        "val_space": f"scaled {cfg.window.target} target, masked MSE; window = whole target window, forecast = last step",
    }, f"training record of {name}")
    _write_outputs(RunDir(out), cfg, name, twin, scaler, t, history, record)
    return final_dir


def _write_outputs(out: RunDir, cfg: Config, name: str, twin: keras.Model, scaler: Scaler,
                   t: Tensors, history: list[dict[str, float]], record: TrainRecord) -> None:
    out.root.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.model) as tmp:
        twin.save(tmp)
    scaler.save(out.scaling)
    atomic_write_json(out.grid, grid_info(cfg, name, t))
    atomic_write_text(out.history, history_csv(history))
    write_learning_curve(out.learning_curve, history, record.val, name, record.best_epoch)
    record.write(out.record)


def grid_info(cfg: Config, name: str, t: Tensors) -> dict[str, Any]:
    """What a caller needs to feed the network: grid, mask, window, variables, units."""
    return {
        "model": name,
        "lat": [float(v) for v in t.lat],
        "lon": [float(v) for v in t.lon],
        "mask": t.mask.astype(int).tolist(),
        "variables": cfg.variable_names,
        "units": {v.name: v.canonical_units for v in cfg.variables} | {cfg.target.name: cfg.target.canonical_units},
        "seq_len": cfg.window.seq_len,
        "leads": list(cfg.window.leads),
        "antecedent_soil_moisture": cfg.window.antecedent_soil_moisture,
        "forecast_weather": cfg.window.forecast_weather,
        "quantile_levels": list(cfg.forecast.quantiles),
    }


def history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow(row)
    return buf.getvalue()


def write_learning_curve(path: Path, history: list[dict[str, float]], val: dict[str, Any], name: str,
                         best_epoch: int | None = None) -> None:
    """The selection metric (the median's MSE at the forecast step, scaled) per epoch on the
    training batches and the full validation grid, the references' on validation, and the
    kept epoch: the same quantity for every line, whatever the training loss is (the
    pinball loss of a probabilistic model is not an MSE)."""
    from soilcast import style

    fig, ax = style.pyplot().subplots(figsize=(6, 4))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h.get("forecast_mse", np.nan) for h in history], "o-", label="training batches")
    ax.plot(ep, [h.get("val_forecast_mse", np.nan) for h in history], "s-", label="validation (full grid)")
    if best_epoch:
        ax.axvline(best_epoch, color="k", lw=0.8, ls=":", label=f"kept: epoch {best_epoch}")
    for ref_name, ref in training_references().items():
        ax.axhline(val[ref_name]["forecast_mse"], ls=ref.curve_style, color="grey", label=f"{ref_name} (validation)")
    ax.set(xlabel="epoch", ylabel="median's forecast-step MSE (masked, scaled)", yscale="log")
    ax.set_title(style.title(f"{name}: learning curve of the selection metric", style.version()), fontsize=9)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))  # beside the curves, never on them
    fig.tight_layout()
    style.save(fig, path)
