"""The package's import graph, read with ``ast`` (no import executed).

Two readings (:func:`import_graph`): every import statement as written (the layering that
``tests/test_imports.py`` keeps acyclic) and what importing a module can run (``runtime=True``:
what :mod:`soilcast.dvc_stages` follows for a stage's code deps).

How the imports are followed with ``runtime=True``: ``import a.b``, ``from a import b`` (``b``
a submodule or a name), relative imports, at module level and inside functions alike;
importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` (their ``__init__.py`` count); a
package whose ``__init__`` imports every module of itself (``pkgutil.iter_modules(__path__)``,
as ``soilcast.ml.models`` discovers the networks) imports them all; imports under ``if
TYPE_CHECKING:`` never run and do not count; in the CLI's modules (``soilcast.commands.*``,
:data:`SHELLS`) only module-level imports count: what a command imports inside its function
belongs to that command alone (the stage table's ``entries`` name it for a stage's command).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # the folder that holds the soilcast package
PACKAGE = "soilcast"
SHELLS = f"{PACKAGE}.commands."  # the CLI's modules: module-level imports only


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    names = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
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


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _walk(tree: ast.AST, *, skip_type_checking: bool, module_level: bool = False) -> Iterable[ast.AST]:
    """``ast.walk``, optionally without the bodies of ``if TYPE_CHECKING:`` (they never run) and,
    with ``module_level``, without function bodies (what importing the module runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if skip_type_checking and _is_type_checking(node):
            todo.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        if module_level and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        todo.extend(ast.iter_child_nodes(node))


def imports_of(tree: ast.AST, module: str, is_package: bool, known: set[str], *,
               runtime: bool = False, module_level: bool = False) -> set[str]:
    """The soilcast modules one parsed file imports, anywhere in it (``runtime``: only the
    imports that can run, i.e. not under ``if TYPE_CHECKING:``; ``module_level``: not inside
    functions)."""
    found: set[str] = set()
    for node in _walk(tree, skip_type_checking=runtime, module_level=module_level):
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


def _discovers_itself(tree: ast.AST) -> bool:
    """An ``__init__`` that imports every module of its package (``pkgutil.iter_modules(__path__)``)."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "iter_modules"
                and any(isinstance(a, ast.Name) and a.id == "__path__" for a in node.args)):
            return True
    return False


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _graph(src: Path, runtime: bool) -> dict[str, set[str]]:
    modules = module_files(src)
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        shell = runtime and name.startswith(SHELLS)
        edges = imports_of(tree, name, is_package, known, runtime=runtime, module_level=shell)
        if runtime:
            # importing a.b.c runs a and a.b first; a self-discovering package imports its modules
            edges |= {p for target in (*edges, name) for p in _parents(target)}
            if is_package and _discovers_itself(tree):
                edges |= {m for m in known if m.rpartition(".")[0] == name
                          and not m.rpartition(".")[2].startswith("_")}
            edges.discard(name)
        graph[name] = edges
    return graph


@lru_cache(maxsize=8)
def _cached_graph(src: Path, runtime: bool, stamp: tuple) -> dict[str, set[str]]:
    return _graph(src, runtime)


def import_graph(src: Path = SRC, *, runtime: bool = False) -> dict[str, set[str]]:
    """Module -> the soilcast modules it imports. ``runtime=False``: every import statement, as
    written (the layering that ``tests/test_imports.py`` keeps acyclic); ``runtime=True``: what
    importing it can execute (parent packages, self-discovering packages, no ``TYPE_CHECKING``).

    Cached per source tree and the files' modification times, so an edit is seen."""
    src = Path(src).resolve()
    stamp = tuple((str(p), p.stat().st_mtime_ns) for p in sorted((src / PACKAGE).rglob("*.py")))
    return _cached_graph(src, runtime, stamp)


def closure(roots: Iterable[str], graph: dict[str, set[str]]) -> set[str]:
    """Every module reachable from ``roots`` (themselves and their parent packages included)."""
    todo = [m for r in roots for m in (*_parents(r), r)]
    seen: set[str] = set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if module not in graph:
            raise KeyError(f"{module!r} is not a module of src/{PACKAGE}")
        seen.add(module)
        todo.extend(graph[module])
    return seen
