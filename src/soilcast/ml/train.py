"""Train one network: ``train_model(cfg, name) -> artifacts/train/<name>/``.

Why it is organised this way:

* Training runs on random spatial patches (cheap, many distinct samples); validation runs
  on the FULL grid with a twin network built for the full grid (ConvLSTM2D needs static
  spatial shapes; weights do not depend on them and are copied each epoch). The twin is
  what is saved as ``model.keras``, so evaluation and serving see full-grid inputs.
* Validation is computed exactly (weighted sums over all chosen windows, not averaged
  per batch) and written into the epoch logs as ``val_loss`` (masked MSE of the whole
  target window, what is trained) and ``val_forecast_mse`` (the forecast step only), BEFORE
  early stopping / LR plateau read it.
* persistence and climatology are scored on the SAME validation windows in the same
  scaled space, so ``record.json`` says at once whether the network has skill.
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

from soilcast.config import NETWORKS, Config
from soilcast.data.store import Tensors, open_tensors
from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text
from soilcast.ml.checkpoint import (
    EpochCheckpoint,
    best_weights,
    fingerprint,
    load_state,
    restore_model,
)
from soilcast.ml.distribute import get_distribution
from soilcast.ml.losses import MaskedMSE, forecast_mse, masked_sums
from soilcast.ml.models.references import Climatology
from soilcast.ml.models.registry import build_model
from soilcast.ml.precision import with_resolved_precision
from soilcast.ml.scaling import Scaler, mask_fill
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

HISTORY_COLUMNS = ["epoch", "loss", "forecast_mse", "val_loss", "val_forecast_mse", "learning_rate", "seconds"]


def run_dir(cfg: Config, name: str) -> Path:
    return Path(cfg.paths.artifacts_dir) / "train" / name


def load_tensors(cfg: Config) -> Tensors:
    """Open the store and check it matches what the config promises."""
    t = open_tensors(cfg.paths.processed)
    src = str(cfg.paths.processed)
    if t.variables != cfg.variable_names:
        raise ValueError(f"{src}: variables {t.variables} differ from params.yaml {cfg.variable_names}")
    if t.X.ndim != 4 or t.Y.shape != t.X.shape[:3] + (1,) or t.mask.shape != t.X.shape[1:3]:
        raise ValueError(f"{src}: expected X [T,H,W,C], Y [T,H,W,1], mask [H,W]; got "
                         f"{t.X.shape}, {t.Y.shape}, {t.mask.shape}")
    check_daily(t.time, src)
    return t


def fit_scaler(cfg: Config, t: Tensors) -> Scaler:
    return Scaler.fit(t.X, t.Y, t.mask, split_slice(t.time, cfg.split.train_years), cfg)


def _fingerprint(cfg: Config, name: str, t: Tensors) -> str:
    d = cfg.to_dict()
    parts = {k: d[k] for k in ("seed", "split", "window", "scaling", "training", "variables", "target")}
    parts["model"] = {"name": name, **d["models"][name]}
    parts["data"] = t.attrs.get("input_hashes")
    parts["shape"] = list(t.X.shape)
    return fingerprint(parts)


class FullGridValidation(keras.callbacks.Callback):
    """Copy weights into the full-grid twin and put exact val metrics into the epoch logs."""

    def __init__(self, twin: keras.Model, val: WindowDataset, history: list[dict[str, float]]):
        super().__init__()
        self.twin, self.val, self.history = twin, val, history
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        self.twin.set_weights(self.model.get_weights())
        scores = score_network(self.twin, self.val)
        logs["val_loss"], logs["val_forecast_mse"] = scores["window_mse"], scores["forecast_mse"]
        lr = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "learning_rate": lr, "seconds": time.perf_counter() - self._t0}
        row.update({k: float(logs[k]) for k in ("loss", "forecast_mse", "val_loss", "val_forecast_mse") if k in logs})
        self.history.append(row)


def score_network(model: keras.Model, ds: WindowDataset) -> dict[str, float]:
    """Exact masked MSE (scaled space) over every window of ``ds``: window and forecast step."""
    acc = np.zeros(4)
    for i in range(len(ds)):
        x, y = ds[i]
        pred = np.asarray(model.predict_on_batch(x))
        acc += [*masked_sums(y[..., :1], pred, y[..., 1:]),
                *masked_sums(y[:, -1:, ..., :1], pred[:, -1:], y[:, -1:, ..., 1:])]
    return {"window_mse": acc[0] / max(acc[1], 1.0), "forecast_mse": acc[2] / max(acc[3], 1.0)}


def score_references(cfg: Config, t: Tensors, data: Prepared, scaler: Scaler, ends: np.ndarray) -> dict[str, dict[str, float]]:
    """persistence and climatology on the given windows, scaled space, like score_network."""
    L, lead = cfg.window.seq_len, cfg.window.lead_days
    target = gather(data.Ys[..., 0], ends, -L + 1 + lead, L)  # [N, L, H, W]
    w = np.broadcast_to(data.weight, target.shape)
    clim = Climatology.from_config(cfg, t.Y, t.time)
    out: dict[str, dict[str, float]] = {}
    for name in ("persistence", "climatology"):
        if name == "persistence":
            pred = gather(data.Ys[..., 0], ends, -L + 1, L)
        else:
            days = np.stack([t.time[e - L + 1 + lead : e + lead + 1] for e in ends])
            phys = clim.predict(days.ravel()).reshape(target.shape)
            pred = mask_fill(scaler.scale_target(phys)[..., None], t.mask)[..., 0]
        sw, nw = masked_sums(target, pred, w)
        sf, nf = masked_sums(target[:, -1], pred[:, -1], w[:, -1])
        out[name] = {"window_mse": sw / max(nw, 1.0), "forecast_mse": sf / max(nf, 1.0)}
    return out


def _compile(model: keras.Model, cfg: Config) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=cfg.training.learning_rate),
        loss=MaskedMSE(),
        metrics=[forecast_mse],
    )


def train_model(
    cfg: Config,
    name: str,
    *,
    resume: bool = True,
    verbose: Any = "auto",
    callbacks: tuple[keras.callbacks.Callback, ...] = (),
) -> Path:
    """Train network ``name``; write model.keras, record.json, scaling.json, grid.json,
    history.csv, learning_curve.png and checkpoints/ under ``artifacts/train/<name>``."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; expected one of {list(NETWORKS)}")
    dist = get_distribution()  # before any TensorFlow op (multi-worker requirement)
    final_dir = run_dir(cfg, name)
    out = final_dir if dist.is_chief else Path(tempfile.mkdtemp(prefix=f"soilcast-worker{dist.worker_index}-"))
    try:
        return _train(cfg, name, dist, final_dir, out, resume, verbose, callbacks)
    finally:
        if out != final_dir:
            shutil.rmtree(out, ignore_errors=True)


def _train(cfg, name, dist, final_dir: Path, out: Path, resume, verbose, extra) -> Path:
    cfg = with_resolved_precision(cfg)  # auto -> this host's policy: built, fingerprinted, recorded
    t = load_tensors(cfg)
    scaler = fit_scaler(cfg, t)
    data = prepare(t, cfg, scaler)
    T, H, W, _ = t.X.shape
    L, C, batch = cfg.window.seq_len, n_input_channels(cfg), cfg.training.batch_size
    train_ends = split_ends(cfg, t.time, "train")
    val_all = split_ends(cfg, t.time, "val")
    val_ends = evenly_spaced(val_all, cfg.training.validation_steps * batch or len(val_all))
    steps = cfg.training.steps_per_epoch or math.ceil(len(train_ends) / batch)

    fp = _fingerprint(cfg, name, t)
    ckpt_dir = final_dir / "checkpoints"
    state = load_state(ckpt_dir, fp) if resume else None
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
        _compile(model, cfg)
        if state:
            restore_model(model, state[1])
    twin = build_model(name, cfg, (L, H, W, C))  # full grid, local (outside the strategy)

    early = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=cfg.training.early_stopping_patience, restore_best_weights=True)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=cfg.training.reduce_lr_factor, patience=cfg.training.reduce_lr_patience)
    ckpt = EpochCheckpoint(ckpt_dir, fp, early, plateau, state, history, write=dist.is_chief)
    cbs = [FullGridValidation(twin, val_ds, history), early, plateau, ckpt, *extra]

    t0 = time.perf_counter()
    if state and state[0].get("stopped"):  # killed after early stopping, before the end
        model.set_weights(best_weights(state[1]) or model.get_weights())
    else:
        model.fit(train_ds, epochs=cfg.training.epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps, callbacks=cbs, verbose=verbose, shuffle=False)
    wall = time.perf_counter() - t0
    if dist.is_chief:
        ckpt.set_model(model)
        ckpt.save(len(history), complete=True)

    twin.set_weights(model.get_weights())
    best = score_network(twin, val_ds)
    refs = score_references(cfg, t, data, scaler, val_ends)
    epochs_run = len(history) - initial_epoch
    record = {
        "model": name,
        "config": cfg.to_dict(),
        "data": {"store": str(cfg.paths.processed), "input_hashes": t.attrs.get("input_hashes"),
                 "shape": list(t.X.shape)},
        "fingerprint": fp,
        "epochs": len(history),
        "epochs_this_run": epochs_run,
        "resumed_from_epoch": initial_epoch,
        "best_epoch": int(np.argmin([h["val_loss"] for h in history]) + 1) if history else None,
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
        "best_val_loss": min(h["val_loss"] for h in history) if history else best["window_mse"],
        "val": {name: best, **refs},
        "val_space": "scaled target, masked MSE; window = whole target window, forecast = last step",
    }
    _write_outputs(out, cfg, name, twin, scaler, t, history, record)
    return final_dir


def _write_outputs(out: Path, cfg: Config, name: str, twin: keras.Model, scaler: Scaler,
                   t: Tensors, history: list[dict[str, float]], record: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.keras") as tmp:
        twin.save(tmp)
    scaler.save(out / "scaling.json")
    atomic_write_json(out / "grid.json", grid_info(cfg, name, t))
    atomic_write_text(out / "history.csv", history_csv(history))
    write_learning_curve(out / "learning_curve.png", history, record["val"], name)
    atomic_write_json(out / "record.json", record)


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
        "lead_days": cfg.window.lead_days,
        "antecedent_soil_moisture": cfg.window.antecedent_soil_moisture,
    }


def history_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow(row)
    return buf.getvalue()


def write_learning_curve(path: Path, history: list[dict[str, float]], val: dict[str, Any], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h.get("loss", np.nan) for h in history], "o-", label="train (patches)")
    ax.plot(ep, [h.get("val_loss", np.nan) for h in history], "s-", label="validation (full grid)")
    for ref, style in (("persistence", ":"), ("climatology", "--")):
        ax.axhline(val[ref]["window_mse"], ls=style, color="grey", label=f"{ref} (validation)")
    ax.set(xlabel="epoch", ylabel="masked MSE (scaled)", title=f"{name}: learning curve", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
