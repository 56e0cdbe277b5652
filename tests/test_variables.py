"""An 8th input variable is one params entry (plus the demo generator knowing it): it flows
through demo data, validation, regridding, the mask, the stack, training, evaluation, the
gate, export and serving with nothing else touched (issue 13's acceptance)."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import numpy as np
import pytest

from soilcast.config import Config, load_config
from soilcast.testing.config import BLESS_ANYTHING, tiny_config
from tests.conftest import PARAMS

# Total cloud cover as ERA5 delivers it; the demo weather model has cloud.
TCC = {"name": "tcc", "source_name": "tcc", "source_units": "(0 - 1)", "canonical_units": "1",
       "accumulated": False, "regrid_method": "conservative", "valid_range": [0.0, 1.0],
       "physical_range": [0.0, 1.0], "transform": "none", "forecast_error": "noise", "colormap": "Greys"}
FAST = {
    "period": {"start": "2010-01-01", "end": "2012-12-31"},
    "split": {"train_years": [2010, 2010], "val_years": [2011, 2011], "test_years": [2012, 2012]},
    "demo": {"valid_time_years": [2012]},
    "training": {"models": ["fc"], "epochs": 1, "steps_per_epoch": 2, "validation_steps": 1},
    # an untrained network rarely beats climatology; the gate's value check is not under test
    "gate": BLESS_ANYTHING,
}


def seven_and_eight(root: Path) -> tuple[Config, Config]:
    seven = tiny_config(root, FAST)
    eight = tiny_config(root, {**FAST, "variables": [*load_config(PARAMS).to_dict()["variables"], TCC]})
    return seven, eight


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The whole chain on the 8-variable config, a 7-variable stand-in served beforehand."""
    from soilcast.demo.generate import generate
    from soilcast.testing.stages import (
        build_mask,
        evaluate,
        export_blessed,
        regrid_all,
        run_gate,
        run_validation,
        stack_tensors,
        train_model,
    )
    from soilcast.testing.standin import write_standin_for

    seven, cfg = seven_and_eight(tmp_path_factory.mktemp("eight"))
    write_standin_for(seven, 1)  # the champion, trained on the seven
    generate(cfg, cfg.paths.raw_dir)
    run_validation(cfg)
    regrid_all(cfg)
    build_mask(cfg)
    stack_tensors(cfg, plots=False)
    train_model(cfg, "fc", verbose=0)
    evaluate(cfg)
    decision = run_gate(cfg)
    return cfg, decision, export_blessed(cfg)


def test_demo_generator_names_a_variable_it_cannot_make(tmp_path):
    from soilcast.demo.generate import generate

    odd = {**TCC, "name": "lai", "source_name": "lai"}
    cfg = tiny_config(tmp_path, {"variables": [*load_config(PARAMS).to_dict()["variables"], odd]})
    with pytest.raises(ValueError, match=r"params variables lists 'lai', which the demo generator cannot synthesise"):
        generate(cfg, cfg.paths.raw_dir)


def test_the_store_has_eight_channels(chain):
    from soilcast.data.store import open_tensors

    cfg, _, _ = chain
    t = open_tensors(cfg.paths.processed)
    assert t.X.shape[-1] == 8 and t.variables == cfg.variable_names and t.variables[-1] == "tcc"
    assert t.attrs["units"]["tcc"] == "1"
    cloud = t.X[..., -1]
    assert np.isfinite(cloud).all() and 0.0 <= cloud.min() and cloud.max() <= 1.0 and cloud.std() > 0.01


def test_training_and_evaluation_see_eight_inputs(chain):
    from soilcast.ml.scaling import Scaler
    from soilcast.records import TrainRecord

    cfg, _, _ = chain
    run = cfg.paths.artifacts_dir / "train" / "fc"
    scaler = Scaler.load(run / "scaling.json")
    assert list(scaler.variables) == cfg.variable_names
    assert scaler.log1p == (True,) + (False,) * 7  # transform: log1p for tp only, as params say
    assert json.loads((run / "grid.json").read_text())["variables"] == cfg.variable_names
    metrics = json.loads((cfg.paths.artifacts_dir / "eval" / "metrics.json").read_text())
    assert metrics["fc"]["status"] == "ok", metrics["fc"]  # scored, not refused
    record = json.loads((run / "record.json").read_text())
    assert record["data"]["shape"][-1] == 8
    assert TrainRecord.read(run / "record.json").to_json() == record  # the typed record is the file


def test_gate_does_not_compare_with_a_champion_on_seven_inputs(chain):
    cfg, decision, _ = chain
    why = decision.champion["incomparable"]
    assert decision.champion["version"] == 1 and "trained on other inputs" in why and "'tcc'" in why
    assert decision.blessed, decision.reasons


def test_export_has_eight_channels(chain):
    import tensorflow as tf

    cfg, _, version_dir = chain
    assert version_dir == cfg.paths.models_dir / "2"
    meta = json.loads((version_dir / "assets.extra" / "soilcast_metadata.json").read_text())
    assert meta["variables"] == cfg.variable_names and meta["inputs"]["meteo"][-1] == 8
    spec = tf.saved_model.load(str(version_dir)).signatures["serving_default"].structured_input_signature[1]
    assert spec["meteo"].shape.as_list() == [None, cfg.window.seq_len, *cfg.grid.shape, 8]


def test_gateway_serves_eight_and_refuses_seven(chain):
    from soilcast.data.store import open_tensors
    from soilcast.ml.windows import split_ends, window_inputs
    from soilcast.testing.serving import client, gateway

    cfg, _, _ = chain
    t = open_tensors(cfg.paths.processed)
    x = window_inputs(cfg, t, split_ends(cfg, t.time, "test")[:1], False)["meteo"]
    assert x.shape[-1] == 8
    with gateway(cfg) as gw:
        c = client(gw, version=2)
        y = c.predict(x)
        assert y.shape == (1, *cfg.grid.shape) and np.isfinite(y[0][t.mask]).all()
        with pytest.raises(grpc.RpcError) as err:
            c.predict(x[..., :7])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "expected [batch>=1" in err.value.details() and ", 8]" in err.value.details()
        old = client(gw, version=1)  # the seven-input champion keeps serving its clients
        assert old.predict(x[..., :7]).shape == (1, *cfg.grid.shape)
