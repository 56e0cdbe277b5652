"""Checkpoints: the best epoch's weights on ``val_forecast_mse`` are the ones kept, a
checkpoint round-trips weights and optimizer state, and only the same run is resumed."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from soilcast.data.store import Tensors
from soilcast.ml.checkpoint import (
    STATE,
    BestWeights,
    EpochCheckpoint,
    best_weights,
    fingerprint,
    load_state,
    restore_model,
)
from soilcast.ml.train import SELECT_ON, run_fingerprint
from soilcast.testing.config import tiny_config

X = np.linspace(-1.0, 1.0, 16, dtype=np.float32)[:, None]
Y = 2.0 * X


def _model(optimizer: keras.optimizers.Optimizer) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    # named like the training stage's metric, so keras logs it as val_forecast_mse
    model.compile(optimizer=optimizer, loss="mse", metrics=[keras.metrics.MeanSquaredError(name="forecast_mse")])
    return model


def _diverging() -> keras.Model:
    """Full-batch SGD past its stability limit (lr > 1 / mean(x**2)): every epoch is worse than the last,
    so the best epoch is the first and the last is the worst."""
    return _model(keras.optimizers.SGD(learning_rate=4.0))


class Recorder(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.weights: list[list[np.ndarray]] = []
        self.scores: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.weights.append([np.asarray(w) for w in self.model.get_weights()])
        self.scores.append(float(logs[SELECT_ON]))


def _fit(model, callbacks, epochs, initial_epoch=0):
    model.fit(X, Y, batch_size=len(X), epochs=epochs, initial_epoch=initial_epoch, validation_data=(X, Y),
              callbacks=callbacks, verbose=0, shuffle=False)


def _assert_weights(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# ------------------------------------------------------------------------------ BestWeights
def test_best_weights_keep_the_lowest_finite_score_first_reached():
    model = _model(keras.optimizers.SGD())
    best = BestWeights(SELECT_ON)
    best.set_model(model)
    scores = [0.5, 0.3, float("nan"), 0.3, 0.4, None, float("inf")]
    for epoch, score in enumerate(scores):
        model.set_weights([np.full((1, 1), epoch, np.float32)])
        best.on_epoch_end(epoch, {} if score is None else {SELECT_ON: score, "val_loss": 0.0})
    assert (best.best, best.best_epoch) == (0.3, 2)  # 1-based; a tie does not replace it
    best.on_train_end()
    assert model.get_weights()[0].item() == 1.0


def test_without_a_finite_score_the_weights_are_left_alone():
    model = _model(keras.optimizers.SGD())
    best = BestWeights(SELECT_ON)
    best.set_model(model)
    model.set_weights([np.full((1, 1), 7.0, np.float32)])
    best.on_epoch_end(0, {SELECT_ON: float("nan"), "loss": 0.1})
    best.on_train_end()
    assert best.best_epoch is None and model.get_weights()[0].item() == 7.0


def test_training_ends_on_the_best_epoch_not_the_last():
    model, best, rec = _diverging(), BestWeights(SELECT_ON), Recorder()
    _fit(model, [best, rec], epochs=4)
    k = int(np.argmin(rec.scores))
    assert k < 3 and rec.scores[-1] > rec.scores[k] and best.best_epoch == k + 1
    _assert_weights(model.get_weights(), rec.weights[k])
    assert not np.array_equal(model.get_weights()[0], rec.weights[-1][0])


# ------------------------------------------------------------------------------ EpochCheckpoint
def _checkpointed(tmp_path, epochs=2, optimizer=None):
    model = _model(optimizer or keras.optimizers.Adam(0.1))
    best, rec = BestWeights(SELECT_ON), Recorder()
    ckpt = EpochCheckpoint(tmp_path / "checkpoints", "fp-a", best, None, history=[])
    _fit(model, [best, ckpt, rec], epochs=epochs)
    return model, best, ckpt, rec


def test_checkpoint_state_names_one_array_file_and_the_best_epoch(tmp_path):
    model, best, _, rec = _checkpointed(tmp_path, epochs=3)
    ckpt_dir = tmp_path / "checkpoints"
    state = json.loads((ckpt_dir / STATE).read_text())
    assert (state["epochs_done"], state["complete"], state["arrays"]) == (3, False, "epoch_0003.npz")
    assert state["fingerprint"] == "fp-a" and state["best"]["monitor"] == SELECT_ON
    assert state["best"]["epoch"] == best.best_epoch == int(np.argmin(rec.scores)) + 1
    assert state["best"]["value"] == pytest.approx(min(rec.scores))
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["epoch_0003.npz", STATE]  # older arrays pruned


def test_restore_puts_back_weights_and_optimizer_state(tmp_path):
    model, best, _, rec = _checkpointed(tmp_path)
    state, arrays = load_state(tmp_path / "checkpoints", "fp-a")
    _assert_weights(best_weights(arrays), best.best_weights)
    fresh = _model(keras.optimizers.Adam(0.1))
    restore_model(fresh, arrays)
    _assert_weights(fresh.get_weights(), rec.weights[-1])  # the last epoch's, not the best's
    got = [keras.ops.convert_to_numpy(v) for v in fresh.optimizer.variables]
    want = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    _assert_weights(got, want)
    assert int(keras.ops.convert_to_numpy(fresh.optimizer.iterations)) == 2  # one full batch per epoch


def test_restore_refuses_another_optimizer(tmp_path):
    _, _, _, _ = _checkpointed(tmp_path)
    _, arrays = load_state(tmp_path / "checkpoints", "fp-a")
    other = _model(keras.optimizers.SGD())
    other.optimizer.build(other.trainable_variables)
    n_ckpt, n_model = len([k for k in arrays if k.startswith("o_")]), len(other.optimizer.variables)
    assert n_ckpt != n_model
    with pytest.raises(ValueError, match=f"^checkpoint has {n_ckpt} optimizer variables, model {n_model}$"):
        restore_model(other, arrays)


def test_only_an_unfinished_run_with_the_same_fingerprint_is_resumed(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    assert load_state(ckpt_dir, "fp-a") is None  # nothing saved yet
    _, _, ckpt, _ = _checkpointed(tmp_path)
    assert load_state(ckpt_dir, "fp-a") is not None
    assert load_state(ckpt_dir, "fp-b") is None
    ckpt.save(2, complete=True)
    assert load_state(ckpt_dir, "fp-a") is None  # finished: re-running trains afresh


def test_a_resumed_run_keeps_the_best_epoch_from_before_the_interruption(tmp_path):
    """Epoch 1 is the best and happened before the kill; the resumed epochs 3-4 are worse."""
    model, best, _, first = _checkpointed(tmp_path, optimizer=keras.optimizers.SGD(learning_rate=4.0))
    assert best.best_epoch == 1
    resumed = load_state(tmp_path / "checkpoints", "fp-a")
    again = _diverging()
    restore_model(again, resumed[1])
    best2, rec = BestWeights(SELECT_ON), Recorder()
    history = list(resumed[0]["history"])
    _fit(again, [best2, EpochCheckpoint(tmp_path / "checkpoints", "fp-a", best2, resumed, history), rec],
         epochs=4, initial_epoch=resumed[0]["epochs_done"])
    assert len(rec.scores) == 2 and min(rec.scores) > first.scores[0]
    assert best2.best_epoch == 1
    _assert_weights(again.get_weights(), first.weights[0])


# ------------------------------------------------------------------------------ fingerprints
def test_fingerprint_ignores_key_order_but_not_values():
    assert fingerprint({"a": 1, "b": {"c": [1, 2]}}) == fingerprint({"b": {"c": [1, 2]}, "a": 1})
    assert fingerprint({"a": 1, "b": {"c": [1, 2]}}) != fingerprint({"a": 1, "b": {"c": [2, 1]}})


def _tensors(hashes: dict[str, str], days: int = 10) -> Tensors:
    return Tensors(X=np.zeros((days, 2, 2, 7), np.float32), Y=np.zeros((days, 2, 2, 1), np.float32),
                   mask=np.ones((2, 2), bool), basin_id=np.ones((2, 2), np.int32),
                   time=pd.date_range("2010-01-01", periods=days), lat=np.zeros(2), lon=np.zeros(2),
                   attrs={"variables": [], "input_hashes": hashes})


def test_a_run_with_other_params_or_data_is_another_run(tmp_path):
    data = {"era5/tp_2010.nc": "aa"}
    base = tiny_config(tmp_path)
    fp = run_fingerprint(base, "gru", _tensors(data))
    same = [
        run_fingerprint(tiny_config(tmp_path, {"serving": {"poll_seconds": 9.0}}), "gru", _tensors(data)),
        run_fingerprint(tiny_config(tmp_path, {"models": {"fc": {"units": [16]}}}), "gru", _tensors(data)),
    ]
    other = [
        run_fingerprint(tiny_config(tmp_path, {"training": {"epochs": 3}}), "gru", _tensors(data)),
        run_fingerprint(tiny_config(tmp_path, {"seed": base.seed + 1}), "gru", _tensors(data)),
        run_fingerprint(tiny_config(tmp_path, {"models": {"gru": {"units": 8}}}), "gru", _tensors(data)),
        run_fingerprint(base, "lstm", _tensors(data)),
        run_fingerprint(base, "gru", _tensors({"era5/tp_2010.nc": "ab"})),
        run_fingerprint(base, "gru", _tensors(data, days=11)),
    ]
    assert same == [fp, fp]
    assert len({fp, *other}) == 1 + len(other)
