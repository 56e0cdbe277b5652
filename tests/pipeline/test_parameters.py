"""The pipeline-parameter <-> params.yaml mapping is one table; everything else derives from it."""

from __future__ import annotations

import inspect

from components.data import configure
from components.evaluate import gate

from soilcast.config import deep_merge, read_params
from soilcast.pipeline import parameters
from soilcast.pipeline.build import pipeline_module
from tests.conftest import PARAMS


def test_component_signatures_list_exactly_the_table_rows_of_their_step():
    assert [n for n in inspect.signature(configure).parameters if n not in ("params", "overrides")] == [
        p.name for p in parameters.of_step("configure")]
    gate_params = set(inspect.signature(gate).parameters)
    assert {p.name for p in parameters.of_step("gate")} <= gate_params
    for fn, step in ((configure, "configure"), (gate, "gate")):
        sig = inspect.signature(fn).parameters
        assert all(sig[p.name].annotation is p.kind for p in parameters.of_step(step)), step


def test_pipeline_signature_and_arguments_come_from_the_table():
    raw = read_params(PARAMS)
    module = pipeline_module()
    args = module.pipeline_arguments(raw)
    assert args["period_start"] == "2010-01-01" and args["grid_res"] == 1.0
    assert args["models"] == raw["training"]["models"] and args["epochs"] == raw["training"]["epochs"]
    assert args["min_skill_vs_best_reference"] == float(raw["gate"]["min_skill_vs_best_reference"])
    assert not any(n.startswith(("min_skill_vs_climatology", "min_skill_vs_persistence")) for n in args)
    names = [p.name for p in parameters.PARAMETERS]
    sig = module._signature(args)
    assert [n for n in sig.parameters if n in names] == names
    assert all(sig.parameters[n].default == args[n] for n in sig.parameters)


def test_nested_overrides_reproduce_the_params_they_stand_for():
    raw = read_params(PARAMS)
    values = parameters.defaults(raw)
    for step in ("configure", "gate"):
        merged = deep_merge(raw, parameters.nested(values, step))
        assert parameters.defaults(merged) == values
    assert parameters.nested({**values, "epochs": 3}, "configure")["training"]["epochs"] == 3
    assert "gate" not in parameters.nested(values, "configure")  # thresholds reach only the gate
