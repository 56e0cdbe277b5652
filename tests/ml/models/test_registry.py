"""The network registry is the one list: a network registered in one file (plus its params
section) is validated, listed by ``soilcast train --help``, trained, evaluated and blessed
through the normal path, and bad params fail at load naming the key."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

from soilcast.config import ConfigError
from soilcast.ml.models import registry
from soilcast.ml.models.registry import build_model
from soilcast.ml.models.weather_head import body_of
from soilcast.testing.config import BLESS_ANYTHING, tiny_config

SHAPE = (5, 6, 6, 7)  # L, H, W, C

TOY_MODULE = "tests.ml.models.toy_network"


@pytest.fixture
def toy() -> Iterator[str]:
    """Register the toy network (importing its file is all it takes); remove it afterwards so
    every other test sees the real networks only."""
    real = registry.names()
    module = importlib.import_module(TOY_MODULE)
    if module.NAME not in registry.names():  # imported (and unregistered) by an earlier test
        registry.register(module.NAME, params=module.ToyParams)(module.build_toy)
    yield module.NAME
    registry.unregister(module.NAME)
    assert registry.names() == real


def test_real_networks_are_found_without_a_list():
    assert set(registry.names()) >= {"convlstm", "lstm", "gru", "fc", "cnn_td"}


@pytest.mark.parametrize("name", registry.names())
def test_network_params_have_no_defaults(name):
    """Values come from params.yaml only, as for every other section."""
    fields = registry.get(name).params.model_fields
    assert fields and all(f.is_required() for f in fields.values())


def test_a_registered_network_needs_its_section_and_valid_params(tmp_path, toy):
    with pytest.raises(ConfigError, match=f"models.{toy}: missing section"):
        tiny_config(tmp_path)
    with pytest.raises(ConfigError) as err:
        tiny_config(tmp_path, {"models": {toy: {"filters": 0}}})
    assert f"models.{toy}.filters: Input should be greater than or equal to 1 (got 0)" in str(err.value)
    with pytest.raises(ConfigError, match=f"models.{toy}.units: unknown key"):
        tiny_config(tmp_path, {"models": {toy: {"filters": 2, "units": 3}}})


def test_unknown_networks_are_named_with_the_choices(tmp_path):
    with pytest.raises(ConfigError) as err:
        tiny_config(tmp_path, {"training": {"models": ["lstm", "foo"]}, "models": {"bar": {}}})
    msg = str(err.value)
    assert f"training.models: unknown network 'foo'; registered: {', '.join(registry.names())}" in msg
    assert "models.bar: unknown network" in msg


def test_cli_config_loading_checks_the_networks(tmp_path):
    from soilcast.cli import app
    from soilcast.config import save_config

    cfg = tiny_config(tmp_path)
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    params.write_text(params.read_text().replace("units: 4", "units: four", 1))
    result = CliRunner().invoke(app, ["check-config", "--params", str(params)])
    assert result.exit_code == 2
    assert "models.lstm.units: Input should be a valid integer (got 'four')" in result.output


def test_a_new_network_is_listed_trained_evaluated_and_blessed(tmp_path, toy):
    from soilcast.cli import app
    from soilcast.testing.stages import evaluate, run_gate, train_model
    from soilcast.testing.synthetic import write_synthetic_store

    help_text = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert f"{', '.join(registry.names())}." in help_text and toy in registry.names()

    # The toy trains for two steps only: the test is about the path, so the gate's value
    # threshold is opened here; the gate must still rank the toy as the only network with a
    # finite validation score and bless it (no champion is served in this fresh tree).
    cfg = tiny_config(tmp_path, {
        "models": {toy: {"filters": 4}},
        "training": {"models": [toy], "epochs": 1, "steps_per_epoch": 2},
        "gate": BLESS_ANYTHING,
    })
    write_synthetic_store(cfg)
    out = train_model(cfg, toy, verbose=0)
    assert (out / "model.keras").is_file()

    metrics = evaluate(cfg)
    assert metrics[toy].status == "ok" and metrics[toy].kind == "network"
    assert metrics[toy].leads == cfg.window.leads
    assert set(metrics[toy].val) == {str(k) for k in cfg.window.leads}  # scored at every lead
    assert all(block["rmse"] > 0 for block in metrics[toy].val.values())
    assert set(metrics.skipped()) == set(registry.names()) - {toy}
    board = (cfg.paths.artifacts_dir / "eval" / "leaderboard.md").read_text()
    assert f"| {toy} | network |" in board

    decision = run_gate(cfg)
    assert decision.winner == toy and list(decision.candidates) == [toy]
    assert set(decision.skill_vs_best_reference) == {str(k) for k in cfg.window.leads}
    assert decision.blessed is True, decision.reasons


# Every registered network, through the same builder.
@pytest.mark.parametrize("name", registry.names())
def test_every_network_honours_the_output_contract(tiny_cfg, name):
    """[b, L, H, W, C] -> [b, L, H, W, K]: one output channel per lead of window.leads (the
    median); with the quantile head K*Q, lead-major."""
    from soilcast.ml.models.heads import head_width

    K, Q = len(tiny_cfg.window.leads), len(tiny_cfg.forecast.quantiles)
    assert head_width(tiny_cfg) == K > 1 and Q > 1
    model = build_model(name, tiny_cfg, SHAPE)
    x = np.random.default_rng(0).normal(size=(2,) + SHAPE).astype(np.float32)
    y = np.asarray(model.predict_on_batch(x))
    assert y.shape == (2,) + SHAPE[:3] + (K * Q,) and y.dtype == np.float32
    assert np.isfinite(y).all()
    assert np.asarray(body_of(model).predict_on_batch(x)).shape == (2,) + SHAPE[:3] + (K,)
    three = build_model(name, tiny_config(tiny_cfg.paths.artifacts_dir.parent / "k3",
                                          {"window": {"leads": [1, 4, 9]}, "forecast": {"quantiles": [0.5]}}), SHAPE)
    assert np.asarray(three.predict_on_batch(x)).shape == (2,) + SHAPE[:3] + (3,)


def test_mixed_precision_keeps_float32_output(tmp_path):
    cfg = tiny_config(tmp_path, {"training": {"precision": "mixed_bfloat16"}})
    before = keras.config.dtype_policy().name
    model = build_model("cnn_td", cfg, SHAPE)
    assert keras.config.dtype_policy().name == before  # global policy restored
    assert body_of(model).get_layer("td_conv_1").dtype_policy.name == "mixed_bfloat16"
    assert model.output.dtype == "float32"


def test_per_cell_models_have_no_spatial_context(tiny_cfg):
    """lstm/gru/fc: changing one cell's inputs changes only that cell's output (the median
    they forecast; the quantile head's spread reads neighbours on purpose)."""
    x = np.random.default_rng(1).normal(size=(1,) + SHAPE).astype(np.float32)
    x2 = x.copy()
    x2[0, :, 2, 3] += 5.0
    for name in ("lstm", "gru", "fc"):  # tiny_cfg's state target: random (non-zero) read-outs
        m = body_of(build_model(name, tiny_cfg, SHAPE))
        d = np.abs(np.asarray(m.predict_on_batch(x2)) - np.asarray(m.predict_on_batch(x)))[0].max(axis=-1)
        assert d[:, 2, 3].max() > 0 and np.delete(d.reshape(SHAPE[0], -1), 2 * 6 + 3, axis=1).max() == 0
