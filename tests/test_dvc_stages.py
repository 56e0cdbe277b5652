"""The stage table and dvc.yaml agree, and dvc.yaml's code deps are exactly what each stage runs.

The last test is the proof with the real DVC: in a copy of the package and of dvc.yaml's code
deps, an edit to one function of ``ml/windows.py`` makes ``dvc status`` list exactly the stages
whose import closure holds it.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soilcast import dvc_stages, import_graph, stages
from soilcast.dvc_stages import code_modules, declared_code, declared_stages, drift, rewrite
from soilcast.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = REPO / "dvc.yaml"
WINDOWS = "src/soilcast/ml/windows.py"


def test_dvc_yaml_lists_exactly_the_code_each_stage_runs() -> None:
    problems = drift(DVC_YAML)
    assert not problems, "dvc.yaml and soilcast.stages disagree:\n" + "\n".join(problems)


def test_the_closure_follows_every_kind_of_import_and_no_further() -> None:
    evaluate = code_modules("evaluate")
    assert "src/soilcast/ml/train.py" in evaluate  # imported inside a function of evaluate.py
    assert WINDOWS in evaluate
    assert "src/soilcast/__init__.py" in evaluate and "src/soilcast/evaluation/__init__.py" in evaluate
    assert "src/soilcast/commands/evaluation.py" in evaluate  # the command: its defaults shape the run
    assert "src/soilcast/evaluation/gate.py" not in evaluate  # a module of the same folder it never runs
    train = code_modules("train")
    # ml.models discovers its modules (pkgutil): every network is code of train
    assert {"src/soilcast/ml/models/convlstm.py", "src/soilcast/ml/models/recurrent.py"} <= set(train)
    for data_stage in ("validate", "regrid", "clip", "stack"):
        files = code_modules(data_stage)
        assert "src/soilcast/config.py" in files and "src/soilcast/io/atomic.py" in files
        # the command modules' function-level imports are their other commands': not followed
        assert "src/soilcast/ml/models/registry.py" not in files  # load_cfg(networks=True) only
        assert "src/soilcast/data/ingest.py" not in files  # `soilcast ingest`, beside the stage commands
    assert "src/soilcast/data/validate.py" in code_modules("stack")
    assert all(f.endswith(".py") and (REPO / f).is_file() for s in STAGES for f in code_modules(s.name))


def _command_imports(shell: str, command: str) -> set[str]:
    """The soilcast modules ``soilcast <command>``'s function imports, with the helpers of its
    own module that it calls (``_run``, ``_runs``), transitively."""
    files = import_graph.module_files()
    tree = ast.parse(files[shell].read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def registers(fn: ast.FunctionDef) -> bool:
        return any(isinstance(d, ast.Call) and d.args and isinstance(d.args[0], ast.Constant)
                   and d.args[0].value == command for d in fn.decorator_list)

    todo = [fn for fn in functions.values() if registers(fn)]
    assert len(todo) == 1, f"{shell} registers no command {command!r} (or several)"
    seen: set[str] = set()
    found: set[str] = set()
    while todo:
        fn = todo.pop()
        if fn.name in seen:
            continue
        seen.add(fn.name)
        found |= import_graph.imports_of(fn, shell, False, set(files), runtime=True)
        todo += [functions[n.id] for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id in functions]
    return found


@pytest.mark.parametrize("st", STAGES, ids=lambda s: s.name)
def test_the_table_covers_what_the_stage_command_imports(st: stages.Stage) -> None:
    """A library module the command imports for its stage is an entry (or reached from one)."""
    ran = import_graph.closure((*st.roots, st.shell), import_graph.import_graph(runtime=True))
    missing = _command_imports(st.shell, st.command) - ran
    assert not missing, f"stage {st.name!r}: add {sorted(missing)} to its entries in soilcast/stages.py"


@pytest.mark.parametrize("st", STAGES, ids=lambda s: s.name)
def test_every_stage_function_is_defined_where_the_table_says(st: stages.Stage) -> None:
    module, _, name = st.function.partition(":")
    tree = ast.parse(import_graph.module_files()[module].read_text())
    assert name in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, st.function


def test_drift_names_stage_missing_superfluous_and_the_fix_and_write_repairs_only_code_deps(tmp_path) -> None:
    text = DVC_YAML.read_text()
    evaluate = text.index("\n  evaluate:")
    head, tail = text[:evaluate], text[evaluate:]
    broken = head + tail.replace(f"      - {WINDOWS}\n", "      - src/soilcast/serving/rest.py\n", 1)
    (tmp_path / "dvc.yaml").write_text(broken)
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")  # resolves dvc.yaml's ${...} paths
    problems = drift(tmp_path / "dvc.yaml")
    assert len(problems) == 1, problems
    assert "stage 'evaluate'" in problems[0] and f"missing ['{WINDOWS}']" in problems[0]
    assert "superfluous ['src/soilcast/serving/rest.py']" in problems[0]
    assert "python -m soilcast.dvc_stages --write" in problems[0]
    assert dvc_stages.main(["--check", "--dvc-yaml", str(tmp_path / "dvc.yaml")]) == 1
    assert dvc_stages.write(tmp_path / "dvc.yaml")
    assert (tmp_path / "dvc.yaml").read_text() == text  # comments, templating, data deps as they were
    assert not dvc_stages.write(tmp_path / "dvc.yaml")


def test_rewrite_keeps_data_deps_and_comments_and_puts_code_after_them() -> None:
    text = ("stages:\n  a:\n    cmd: soilcast a\n    deps:\n      - data/x   # why\n"
            "      - src/soilcast/old.py\n      - ${paths.y}\n    outs:\n      - out\n  b:\n    cmd: soilcast b\n")
    out = rewrite(text, {"a": ["src/soilcast/n1.py", "src/soilcast/n2.py"]})
    assert out == ("stages:\n  a:\n    cmd: soilcast a\n    deps:\n      - data/x   # why\n      - ${paths.y}\n"
                   "      - src/soilcast/n1.py\n      - src/soilcast/n2.py\n    outs:\n      - out\n"
                   "  b:\n    cmd: soilcast b\n")


def test_closures_are_deterministic() -> None:
    first = {s.name: code_modules(s.name) for s in STAGES}
    import_graph._cached_graph.cache_clear()
    again = {s.name: code_modules(s.name) for s in STAGES}
    assert first == again and all(v == sorted(v) for v in first.values())


def _dvc() -> str:
    beside = Path(sys.executable).parent / "dvc"  # installed with the project, in its venv
    found = str(beside) if beside.is_file() else shutil.which("dvc")
    assert found, "the dvc executable must be installed (it is in requirements.lock)"
    return found


def _edit_one_function(path: Path) -> str:
    """Add a statement at the end of the first function of ``path``; its name."""
    lines = path.read_text().splitlines(keepends=True)
    fn = next(n for n in ast.parse("".join(lines)).body if isinstance(n, ast.FunctionDef))
    last = fn.body[-1]
    lines.insert(last.end_lineno, " " * last.col_offset + "_edited = None  # noqa\n")
    path.write_text("".join(lines))
    ast.parse(path.read_text())
    return fn.name


def test_real_dvc_status_lists_exactly_the_stages_that_run_an_edited_module(tmp_path) -> None:
    """The real dvc.yaml's stages, cut to their code deps (a cmd that writes nothing), on a copy
    of src/: clean after `dvc repro`; one function of ml/windows.py edited, `dvc status` lists
    evaluate and every other stage whose closure holds it, and no other."""
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    models = yaml.safe_load((REPO / "params.yaml").read_text())["training"]["models"]
    cut: dict = {}
    for name, declared in declared_stages(DVC_YAML).items():
        body = {"cmd": "true", "deps": declared_code(declared)}
        cut[name] = {"foreach": models, "do": body} if "foreach" in declared else body
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": cut}, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def dvc(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([_dvc(), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"dvc {args}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done

    dvc("init", "--no-scm", "-q")
    dvc("repro", "-q")
    before = dvc("status")
    assert json.loads(dvc("status", "--json").stdout or "{}") == {}, before.stdout
    print(f"$ dvc status   # after dvc repro\n{before.stdout}")

    edited = _edit_one_function(tmp_path / WINDOWS)
    after = dvc("status")
    print(f"$ dvc status   # after editing {WINDOWS}::{edited}\n{after.stdout}")
    changed = json.loads(dvc("status", "--json").stdout)
    listed = {name.partition("@")[0] for name in changed}
    expected = {s.name for s in STAGES if WINDOWS in code_modules(s.name)}
    assert "evaluate" in listed and listed == expected, (listed, expected)
    assert len([n for n in changed if n.startswith("train@")]) == len(models)  # every network's train
    for name, entries in changed.items():
        assert entries == [{"changed deps": {WINDOWS: "modified"}}], (name, entries)
