"""The package's import graph has no cycles.

A cycle makes import order matter (a half-initialised module hands out missing names) and hides
the layering, so every ``import``/``from`` of a soilcast module counts here, at module level and
inside functions alike: a lazy import inside a function is still an edge, because it still
couples the two modules.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "soilcast"


def _module_names(src: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    names = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name a (possibly relative) ``from ... import`` refers to."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The soilcast modules one file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, module, is_package)
            # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # ``import a.b.name`` -> nearest module
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """Module -> the soilcast modules it imports."""
    modules = _module_names(src)
    known = set(modules)
    return {
        name: _imports(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", known)
        for name, path in modules.items()
    }


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

    packages = {m for m, path in _module_names(SRC).items() if path.name == "__init__.py" and m.count(".") == 1}
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
