"""The DVC stages, declared once: the command that runs each, its function, its params and its code.

Why: ``dvc repro`` reruns a stage only when a file it lists under ``deps`` changes, so a module
a stage runs but ``dvc.yaml`` does not list is a change that leaves the old result in place.
The code deps are therefore not written by hand: :func:`code_modules` follows the imports of a
stage's entry modules (the import closure within the ``soilcast`` package, read with ``ast``,
no import executed) and ``dvc.yaml`` must list exactly those files; ``tests/test_stages.py``
fails when they differ, and ``python -m soilcast.stages --write`` rewrites them.

What a stage's code is (the closure's roots):

- its **function**'s module (``soilcast.data.validate`` for ``validate``) and the other
  library modules its command calls for it (``entries``);
- its **shell**, the ``soilcast.commands.*`` module of its command: the file itself (its
  defaults and the arguments it passes shape the run) and what it imports at module level,
  but not inside functions: those imports belong to the module's other commands (``soilcast
  ingest`` beside ``soilcast stack``). The same holds for every ``soilcast.commands`` module
  (``commands/common.load_cfg`` imports the network registry only for ``networks=True``, the
  ml and evaluation stages). What the stage's own command imports inside its function is in
  ``entries``, and ``tests/test_stages.py`` checks that the closure covers it. ``soilcast.cli``
  (which only assembles the command modules) and the other command modules are no stage's code.

How the imports are followed (:func:`import_graph` with ``runtime=True``): ``import a.b``,
``from a import b`` (``b`` a submodule or a name), relative imports, at module level and inside
functions alike; importing ``a.b.c`` also runs the packages ``a`` and ``a.b`` (their
``__init__.py`` count); a package whose ``__init__`` imports every module of itself
(``pkgutil.iter_modules(__path__)``, as ``soilcast.ml.models`` discovers the networks) imports
them all; imports under ``if TYPE_CHECKING:`` never run and do not count. Only ``.py`` files
of the package: data files a module reads are the stage's data deps.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1]  # the folder that holds the soilcast package
PACKAGE = "soilcast"
DVC_YAML = "dvc.yaml"
CODE_PREFIX = f"src/{PACKAGE}/"  # how dvc.yaml names the package's files (from the repo root)
SHELLS = f"{PACKAGE}.commands."  # the CLI's modules: module-level imports only (module docstring)
FIX = "python -m soilcast.stages --write (rewrites only the src/soilcast/ deps of each stage)"


@dataclass(frozen=True)
class Stage:
    """One DVC stage: ``soilcast <command>`` runs ``function`` (``"module:name"``) through the
    command's module ``shell``; ``entries`` are the other library modules that command calls
    for it; ``params`` the params.yaml sections as ``dvc.yaml`` lists them."""

    name: str
    command: str
    function: str
    shell: str
    params: tuple[str, ...]
    entries: tuple[str, ...] = ()
    foreach: bool = False  # one stage per network (``foreach: ${training.models}``)
    optional: bool = False  # dvc.yaml may leave it out (forecasts with sources.forecast: null)

    @property
    def module(self) -> str:
        return self.function.partition(":")[0]

    @property
    def roots(self) -> tuple[str, ...]:
        """The library modules the closure starts from (with the shell, followed at module level)."""
        return (self.module, *self.entries)


_NETWORKS = "soilcast.ml.models.registry"  # load_cfg(networks=True) checks the networks' params

STAGES: tuple[Stage, ...] = (
    Stage("validate", "validate", "soilcast.data.validate:run_validation", "soilcast.commands.data",
          ("period", "variables", "target", "sources", "validate", "preprocess.time_chunk_days"),
          entries=("soilcast.layout", "soilcast.data.readers")),
    Stage("regrid", "regrid", "soilcast.data.regrid:regrid_all", "soilcast.commands.data",
          ("period", "variables", "target", "sources", "grid", "regrid", "preprocess.time_chunk_days"),
          entries=("soilcast.data.readers",)),
    Stage("clip", "clip", "soilcast.data.clip:build_mask", "soilcast.commands.data",
          ("grid", "basins"), entries=("soilcast.data.readers",)),
    Stage("stack", "stack", "soilcast.data.stack:stack_tensors", "soilcast.commands.data",
          ("period", "variables", "target", "grid", "basins", "preprocess"),
          entries=("soilcast.data.readers",)),
    Stage("forecasts", "forecasts", "soilcast.data.forecast_store:build_forecast_store", "soilcast.commands.data",
          ("variables", "sources.forecast", "grid", "window.leads"),
          entries=("soilcast.data.readers",), optional=True),
    Stage("train", "train", "soilcast.ml.train:train_model", "soilcast.commands.ml",
          ("seed", "split", "window", "scaling", "models.${item}", "training", "climatology.window_days",
           "forecast_error", "forecast_head", "forecast"),
          entries=(_NETWORKS, "soilcast.ml.distribute", "soilcast.records"), foreach=True),
    Stage("evaluate", "evaluate", "soilcast.evaluation.evaluate:evaluate", "soilcast.commands.evaluation",
          ("split", "window", "scaling", "climatology", "linear_reference", "forecast", "evaluation",
           "gate.primary_metric"),
          entries=(_NETWORKS, "soilcast.records")),
    Stage("gate", "gate", "soilcast.evaluation.gate:run_gate", "soilcast.commands.evaluation",
          ("gate",), entries=(_NETWORKS,)),
    Stage("export", "export", "soilcast.export.savedmodel:export_blessed", "soilcast.commands.evaluation",
          ("export", "window", "forecast", "split.train_years", "serving.psi_bins", "serving.model_name"),
          entries=(_NETWORKS, "soilcast.export.infra", "soilcast.io.lock")),
)
BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r}; the stages are {', '.join(BY_NAME)}") from None


def load_function(name: str):
    """The stage's function, imported (``load_function("validate")`` is ``run_validation``)."""
    import importlib

    module, _, attr = stage(name).function.partition(":")
    return getattr(importlib.import_module(module), attr)


# ---- the import graph ---------------------------------------------------------------------


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


def code_modules(name: str, src: Path = SRC) -> list[str]:
    """The repo-relative ``.py`` files stage ``name`` runs (``src/soilcast/...``), sorted."""
    st = stage(name)
    graph = import_graph(src, runtime=True)
    found = closure((*st.roots, st.shell), graph)
    files = module_files(src)
    return sorted(f"src/{files[m].relative_to(src).as_posix()}" for m in found)


# ---- dvc.yaml -----------------------------------------------------------------------------


def dvc_stages(dvc_yaml: Path) -> dict:
    import yaml

    return yaml.safe_load(Path(dvc_yaml).read_text())["stages"]


def _body(declared: dict) -> dict:
    return declared["do"] if "foreach" in declared else declared


def declared_code(declared: dict) -> list[str]:
    """The ``src/soilcast/`` entries of one dvc.yaml stage's deps, as written."""
    return [d for d in _body(declared).get("deps", []) if isinstance(d, str) and d.startswith(CODE_PREFIX)]


def drift(dvc_yaml: Path = Path(DVC_YAML), src: Path = SRC) -> list[str]:
    """What differs between dvc.yaml and the table: one line per problem, [] when in step."""
    declared = dvc_stages(dvc_yaml)
    problems = [f"stage {n!r}: in {dvc_yaml} but not in soilcast.stages.STAGES (add it to the table)"
                for n in declared if n not in BY_NAME]
    for st in STAGES:
        if st.name not in declared:
            if not st.optional:
                problems.append(f"stage {st.name!r}: in soilcast.stages.STAGES but not in {dvc_yaml}")
            continue
        body = _body(declared[st.name])
        if ("foreach" in declared[st.name]) != st.foreach:
            problems.append(f"stage {st.name!r}: foreach in one of dvc.yaml and the table only")
        cmd = " ".join(str(body.get("cmd", "")).split())
        if not cmd.startswith(f"soilcast {st.command} "):
            problems.append(f"stage {st.name!r}: cmd should run `soilcast {st.command}` (got {cmd[:60]!r})")
        params = [p if isinstance(p, str) else next(iter(p)) for p in body.get("params", [])]
        if params != list(st.params):
            problems.append(f"stage {st.name!r}: params {params} in dvc.yaml, {list(st.params)} in the table")
        want, have = set(code_modules(st.name, src)), set(declared_code(declared[st.name]))
        if want != have:
            missing, extra = sorted(want - have), sorted(have - want)
            problems.append(
                f"stage {st.name!r}: code deps differ from its import closure; "
                f"missing {missing or 'none'}; superfluous {extra or 'none'}; fix: {FIX}")
    return problems


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):\s*(#.*)?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def rewrite(text: str, code: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each named stage's ``src/soilcast/`` deps replaced by ``code[stage]``
    (after its other deps); every other line (templating, comments, data deps) is kept as it is."""
    lines = text.splitlines(keepends=True)
    starts = {m["key"]: i for i, line in enumerate(lines) if (m := _KEY.match(line)) and len(m["indent"]) == 2}
    for name, files in code.items():
        if name not in starts:
            continue
        start = starts[name]
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and _indent(lines[i]) <= 2), len(lines))
        deps = next((i for i in range(start + 1, end) if lines[i].strip() == "deps:"), None)
        if deps is None:
            raise ValueError(f"stage {name!r} has no `deps:` line to rewrite")
        level = _indent(lines[deps])
        stop = next((i for i in range(deps + 1, end) if lines[i].strip() and _indent(lines[i]) <= level), end)
        items = [i for i in range(deps + 1, stop) if lines[i].lstrip().startswith("- ")]
        pad = " " * (_indent(lines[items[0]]) if items else level + 2)
        kept = [i for i in range(deps + 1, stop)
                if not lines[i].lstrip().startswith(f"- {CODE_PREFIX}")]
        last_item = max((i for i in kept if i in items), default=deps)
        body = [lines[i] for i in kept if i <= last_item]
        body += [f"{pad}- {f}\n" for f in files]
        body += [lines[i] for i in kept if i > last_item]
        lines[deps + 1:stop] = body
        shift = len(body) - (stop - deps - 1)
        starts = {k: (v + shift if v > start else v) for k, v in starts.items()}
    return "".join(lines)


def write(dvc_yaml: Path = Path(DVC_YAML), src: Path = SRC) -> bool:
    """Rewrite dvc.yaml's code deps from the closures; True when the file changed."""
    path = Path(dvc_yaml)
    declared = dvc_stages(path)
    text = path.read_text()
    new = rewrite(text, {s.name: code_modules(s.name, src) for s in STAGES if s.name in declared})
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soilcast.stages", description=__doc__.split("\n")[0])
    parser.add_argument("--dvc-yaml", type=Path, default=Path(DVC_YAML))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when dvc.yaml and the table differ")
    mode.add_argument("--write", action="store_true", help="rewrite the src/soilcast/ deps of every stage")
    args = parser.parse_args(argv)
    if args.write:
        changed = write(args.dvc_yaml)
        print(f"{args.dvc_yaml}: code deps {'rewritten' if changed else 'already in step'}")
    elif not args.check:
        for st in STAGES:
            print(f"{st.name}: soilcast {st.command} -> {st.function}")
            for f in code_modules(st.name):
                print(f"  {f}")
        return 0
    problems = drift(args.dvc_yaml)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
