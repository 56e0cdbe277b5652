"""The package's import graph has no cycles.

A cycle makes import order matter (a half-initialised module hands out missing names) and hides
the layering, so every ``import``/``from`` of a soilcast module counts here, at module level and
inside functions alike: a lazy import inside a function is still an edge, because it still
couples the two modules. The graph is :func:`soilcast.import_graph.import_graph`, the one that also
gives each DVC stage its code deps (``tests/test_stages.py``).
"""

from __future__ import annotations

import graphlib

from soilcast.import_graph import SRC, import_graph, module_files

ROOT = "soilcast"


def test_graph_sees_the_package() -> None:
    graph = import_graph()
    assert "soilcast.config" in graph["soilcast.evaluation.gate"]  # module level
    # function-level imports count: evaluate imports the trainer only inside a function
    assert "soilcast.ml.train" in graph["soilcast.evaluation.evaluate"]


def test_no_import_cycles() -> None:
    try:
        order = list(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as err:
        cycle = " -> ".join(err.args[1])
        raise AssertionError(f"import cycle in src/{ROOT}: {cycle}") from None
    assert len(order) >= len(import_graph())


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Sub-package -> the sub-packages its modules import (``soilcast.export`` -> ``soilcast.repository``).

    Top-level modules (config, layout, records, contract) are the base layer every package
    may use; they are covered by the module-level check above.
    """
    def package(module: str) -> str | None:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or (module in packages) else None

    packages = {m for m, path in module_files(SRC).items() if path.name == "__init__.py" and m.count(".") == 1}
    out: dict[str, set[str]] = {p: set() for p in packages}
    for module, targets in graph.items():
        a = package(module)
        for b in filter(None, map(package, targets)):
            if a and a != b:
                out[a].add(b)
    return out


def test_no_cycles_between_sub_packages() -> None:
    """export writes the model repository and serving reads it; neither imports the other's
    internals, and evaluation reads the champion through ``soilcast.repository`` too."""
    graph = package_graph(import_graph())
    assert "soilcast.repository" in graph["soilcast.export"]  # the walk sees package edges
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        raise AssertionError(f"sub-package cycle in src/{ROOT}: {' -> '.join(err.args[1])}") from None


def test_config_imports_nothing_from_evaluation() -> None:
    """config validates ``gate.primary_metric`` against :mod:`soilcast.metric_names`, a module
    with no imports: nothing in config's import closure (function-level imports included)
    lies in ``soilcast.evaluation``, so loading params never pulls the evaluation package."""
    graph = import_graph()
    assert "soilcast.metric_names" in graph["soilcast.config"] and not graph["soilcast.metric_names"]
    assert "soilcast.quantiles" in graph["soilcast.config"]  # function-level imports are walked
    closure, todo = set(), ["soilcast.config"]
    while todo:
        for target in graph[todo.pop()] - closure:
            closure.add(target)
            todo.append(target)
    upward = sorted(m for m in closure if m == "soilcast.evaluation" or m.startswith("soilcast.evaluation."))
    assert not upward, f"soilcast.config imports {upward} (directly or through {sorted(closure)})"
