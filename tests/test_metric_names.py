"""The metric names: one light list, and the evaluation registry built from it (never kept in step by hand)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from soilcast import metric_names as names
from soilcast.evaluation import metrics


def test_names_are_unique_and_the_gate_ranks_by_errors_only():
    assert len(set(names.METRIC_NAMES)) == len(names.METRIC_NAMES)
    assert names.RANKABLE == ("rmse", "mse", "mae", "ubrmse")
    assert all(names.rankable(i) == (i.name in names.RANKABLE) for i in names.METRIC_INFO)


def test_the_registry_is_the_light_list_with_a_function_each():
    """Same names, same order, same direction, references and leaderboard flag."""
    assert list(metrics.METRICS) == list(names.METRIC_NAMES)
    assert [m.info for m in metrics.METRICS.values()] == list(names.METRIC_INFO)
    assert metrics.rankable is names.rankable  # one rule, re-exported
    assert [n for n, m in metrics.METRICS.items() if metrics.rankable(m)] == list(names.RANKABLE)


def test_a_registry_that_diverges_from_the_light_list_is_refused():
    extra = {**metrics.FUNCTIONS, "crps": metrics.mae}
    with pytest.raises(ValueError, match=r"functions for unlisted names \['crps'\]"):
        metrics.build(names.METRIC_INFO, extra)
    fewer = {k: v for k, v in metrics.FUNCTIONS.items() if k != "kge"}
    with pytest.raises(ValueError, match=r"no function for \['kge'\]"):
        metrics.build(names.METRIC_INFO, fewer)
    twice = (*names.METRIC_INFO, names.METRIC_INFO[0])
    with pytest.raises(ValueError, match="'rmse' is registered twice"):
        metrics.build(twice, metrics.FUNCTIONS)


def test_the_module_imports_nothing_heavy():
    """config imports it: it must stay free of numpy and of every soilcast module."""
    tree = ast.parse(Path(names.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported <= {"__future__", "dataclasses", "typing"}, imported
