"""dvc.yaml checked against the stage table (:mod:`soilcast.stages`), its code deps generated.

Why: ``dvc repro`` reruns a stage only when a file it lists under ``deps`` changes, so a module
a stage runs but ``dvc.yaml`` does not list is a change that leaves the old result in place.
The code deps are therefore not written by hand: :func:`code_modules` follows the imports of a
stage's entry modules (the import closure within the ``soilcast`` package, read with ``ast``,
no import executed) and ``dvc.yaml`` must list exactly those files; ``tests/test_dvc_stages.py``
fails when they differ, and ``python -m soilcast.dvc_stages --write`` rewrites them.

What a stage's code is (the closure's roots):

- its **function**'s module (``soilcast.data.validate`` for ``validate``) and the other
  library modules its command calls for it (``entries``);
- its **shell**, the ``soilcast.commands.*`` module of its command: the file itself (its
  defaults and the arguments it passes shape the run) and what it imports at module level,
  but not inside functions: those imports belong to the module's other commands (``soilcast
  ingest`` beside ``soilcast stack``). The same holds for every ``soilcast.commands`` module
  (``commands/common.load_cfg`` imports the network registry only for ``networks=True``, the
  ml and evaluation stages). What the stage's own command imports inside its function is in
  ``entries``, and ``tests/test_dvc_stages.py`` checks that the closure covers it. ``soilcast.cli``
  (which only assembles the command modules) and the other command modules are no stage's code.

How the imports are followed: :mod:`soilcast.import_graph` (``runtime=True``). Only ``.py``
files of the package: data files a module reads are the stage's data deps.

Besides the code, :func:`port_problems` checks each stage's cmd options, deps and outs against
the table's ports (resolving dvc.yaml's ``${...}`` with the params.yaml beside it), and
:func:`drift` its params, command and ``foreach``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from soilcast.import_graph import PACKAGE, SRC, closure, import_graph, module_files
from soilcast.stages import BY_NAME, STAGES, stage

DVC_YAML = "dvc.yaml"
CODE_PREFIX = f"src/{PACKAGE}/"  # how dvc.yaml names the package's files (from the repo root)
FIX = "python -m soilcast.dvc_stages --write (rewrites only the src/soilcast/ deps of each stage)"


def code_modules(name: str, src: Path = SRC) -> list[str]:
    """The repo-relative ``.py`` files stage ``name`` runs (``src/soilcast/...``), sorted."""
    st = stage(name)
    graph = import_graph(src, runtime=True)
    found = closure((*st.roots, st.shell), graph)
    files = module_files(src)
    return sorted(f"src/{files[m].relative_to(src).as_posix()}" for m in found)


# ---- dvc.yaml----------------------------------------------------------------------------


def declared_stages(dvc_yaml: Path) -> dict:
    import yaml

    return yaml.safe_load(Path(dvc_yaml).read_text())["stages"]


def _body(declared: dict) -> dict:
    return declared["do"] if "foreach" in declared else declared


def declared_code(declared: dict) -> list[str]:
    """The ``src/soilcast/`` entries of one dvc.yaml stage's deps, as written."""
    return [d for d in _body(declared).get("deps", []) if isinstance(d, str) and d.startswith(CODE_PREFIX)]


def drift(dvc_yaml: Path = Path(DVC_YAML), src: Path = SRC) -> list[str]:
    """What differs between dvc.yaml and the table: one line per problem, [] when in step."""
    declared = declared_stages(dvc_yaml)
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
        problems += port_problems(st.name, body, dvc_yaml)
        want, have = set(code_modules(st.name, src)), set(declared_code(declared[st.name]))
        if want != have:
            missing, extra = sorted(want - have), sorted(have - want)
            problems.append(
                f"stage {st.name!r}: code deps differ from its import closure; "
                f"missing {missing or 'none'}; superfluous {extra or 'none'}; fix: {FIX}")
    return problems


_VAR = re.compile(r"\$\{([^}]+)\}")


def _resolved(text: str, params: dict, item: str | None) -> str:
    """dvc.yaml's ``${a.b}`` templating resolved against params.yaml (``${item}``: a network)."""
    def value(match: re.Match) -> str:
        if match[1] == "item":
            return str(item)
        node: Any = params
        for key in match[1].split("."):
            node = node[key]
        return str(node)

    return _VAR.sub(value, text)


def _paths(entries: list, params: dict, item: str | None) -> list[str]:
    """The paths of a deps/outs/metrics/plots list (an entry is a path or {path: options})."""
    return [os.path.normpath(_resolved(e if isinstance(e, str) else next(iter(e)), params, item)) for e in entries]


def _overlap(a: str, b: str) -> bool:
    return a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep)


def port_problems(name: str, body: dict, dvc_yaml: Path) -> list[str]:
    """Stage ``name``'s ports against its dvc.yaml body (params.yaml beside dvc.yaml resolves
    the templating): an option the cmd passes must name the data's place in the default tree,
    and a tracked input must be among the deps, an output among the outs (a path inside or
    around it counts: ``deps: data/raw/met`` for the raw folder)."""
    from soilcast.config import config_from_dict, yaml_load
    from soilcast.layout import Layout
    from soilcast.stages import DATA

    params = yaml_load((Path(dvc_yaml).parent / "params.yaml").read_text())
    cfg, st = config_from_dict(params), stage(name)
    item = params["training"]["models"][0] if st.foreach else None
    lay = Layout.from_config(cfg)
    words = _resolved(" ".join(str(body.get("cmd", "")).split()), params, item).split()
    passed = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    deps = _paths(body.get("deps", []), params, item)
    outs = _paths([*body.get("outs", []), *body.get("metrics", []), *body.get("plots", [])], params, item)
    problems = []
    for port in st.ports:
        where = os.path.normpath(DATA[port.data].where(lay, item))
        given = passed.get(port.option)
        if given is not None and os.path.normpath(given) != where:
            problems.append(f"stage {name!r}: cmd passes {port.option} {given}, but {port.data!r} "
                            f"({port.arg}) lives at {where} in the default tree (soilcast.stages)")
        listed, kind = (outs, "outs") if port.out else (deps, "deps")
        if port.tracked and not any(_overlap(where, p) for p in listed):
            problems.append(f"stage {name!r}: {port.data!r} ({where}, {port.option}) is not among its {kind}")
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
    declared = declared_stages(path)
    text = path.read_text()
    new = rewrite(text, {s.name: code_modules(s.name, src) for s in STAGES if s.name in declared})
    if new == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soilcast.dvc_stages", description=__doc__.split("\n")[0])
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
