"""Per-epoch checkpoints that make an interrupted run resume to the same result.

After every epoch (``checkpoints/``): model weights (BatchNorm statistics included), the
optimizer's variables (step counter, Adam moments; the learning rate is a function of the
step), the best epoch so far with its weights, and the history so far.
Arrays go to ``epoch_NNNN.npz`` first, then ``state.json`` (the commit point) names it, so a
kill at any moment leaves the previous complete checkpoint usable. The data order is a
function of (seed, epoch) (see :mod:`soilcast.ml.windows`), so nothing else is needed.

A run resumes only from a checkpoint with the same fingerprint (config sections and data
hashes the run depends on) that is not marked ``complete``: a finished run is never
silently "resumed" into zero epochs when the stage is re-run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from soilcast.io.atomic import atomic_path, atomic_write_json

STATE = "state.json"


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def load_state(ckpt_dir: Path, fp: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The latest resumable checkpoint, or None (absent, other fingerprint or complete)."""
    path = Path(ckpt_dir) / STATE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if state.get("fingerprint") != fp or state.get("complete"):
        return None
    with np.load(Path(ckpt_dir) / state["arrays"]) as z:
        arrays = {k: z[k] for k in z.files}
    return state, arrays


def _split(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    keys = sorted((k for k in arrays if k.startswith(prefix)), key=lambda k: int(k[len(prefix):]))
    return [arrays[k] for k in keys]


def best_weights(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The best epoch's weights saved in a checkpoint ([] when none yet)."""
    return _split(arrays, "b_")


class BestWeights(keras.callbacks.Callback):
    """Keep the weights of the epoch with the lowest ``monitor`` (model selection on the
    validation score of the forecast step); put them back at the end of training."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is not None and np.isfinite(value) and (self.best is None or value < self.best):
            self.best, self.best_epoch = float(value), epoch + 1
            self.best_weights = [np.asarray(w) for w in self.model.get_weights()]

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def restore_model(model: keras.Model, arrays: dict[str, np.ndarray]) -> None:
    """Weights and optimizer variables (builds the optimizer first if needed)."""
    model.set_weights(_split(arrays, "w_"))
    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)
    values = _split(arrays, "o_")
    if len(values) != len(opt.variables):
        raise ValueError(f"checkpoint has {len(values)} optimizer variables, model {len(opt.variables)}")
    for var, value in zip(opt.variables, values):
        var.assign(value)


class EpochCheckpoint(keras.callbacks.Callback):
    """Save after every epoch; on ``train_begin`` put back the best-epoch state of a resumed run.

    Must come AFTER the :class:`BestWeights` callback in the list: its ``on_epoch_end``
    must have updated the best epoch before it is saved.
    """

    def __init__(
        self,
        ckpt_dir: Path,
        fp: str,
        best: BestWeights,
        resumed: tuple[dict[str, Any], dict[str, np.ndarray]] | None,
        history: list[dict[str, float]],
        write: bool = True,
    ) -> None:
        super().__init__()
        self.dir, self.fp, self.best = Path(ckpt_dir), fp, best
        self.resumed, self.history, self.write = resumed, history, write

    def on_train_begin(self, logs: dict | None = None) -> None:
        if self.resumed is None:
            return
        state, arrays = self.resumed
        self.best.best, self.best.best_epoch = state["best"]["value"], state["best"]["epoch"]
        self.best.best_weights = _split(arrays, "b_") or None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.write:
            self.save(epoch + 1, complete=False)

    def save(self, epochs_done: int, complete: bool) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"epoch_{epochs_done:04d}.npz"
        arrays = {f"w_{i}": np.asarray(w) for i, w in enumerate(self.model.get_weights())}
        for i, v in enumerate(self.model.optimizer.variables):
            arrays[f"o_{i}"] = keras.ops.convert_to_numpy(v)
        for i, w in enumerate(self.best.best_weights or []):
            arrays[f"b_{i}"] = np.asarray(w)
        with atomic_path(self.dir / name) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        state = {
            "fingerprint": self.fp,
            "epochs_done": epochs_done,
            "complete": complete,
            "arrays": name,
            "best": {"value": _num(self.best.best), "epoch": self.best.best_epoch,
                     "monitor": self.best.monitor},
            "history": self.history,
        }
        atomic_write_json(self.dir / STATE, state)
        for old in self.dir.glob("epoch_*.npz"):
            if old.name != name:
                old.unlink(missing_ok=True)


def _num(v: Any) -> float | None:
    return None if v is None else float(v)
