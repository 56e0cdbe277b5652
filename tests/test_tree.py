"""The tests mirror the package: ``tests/<package>/test_<module>.py`` tests ``soilcast.<package>.<module>``.

Why: a reader looking for the tests of a module finds them in one place, and a module whose
test file is missing shows up as a gap rather than hiding in a catch-all file. Helpers shared
by tests live in ``soilcast.testing``, not in ``tests/``.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / "src" / "soilcast"
# Test files about the repository as a whole, not one module.
REPO_LEVEL = {
    "test_make.py": "the Makefile targets",
    "test_deploy.py": "the scheduler files in deploy/ (systemd, cron) run real soilcast commands",
    "test_imports.py": "the package's import graph",
    "test_tree.py": "this layout",
    "test_variables.py": "an input variable added in params.yaml, through every stage to serving",
    "test_weather_export.py": "a network trained with the lead days' weather, through gate and export",
    "test_weather_serving.py": "the weather signatures through the gateway, client and forecast CLI",
}
# Modules a test imports as its subject, kept beside it (not shared helpers).
FIXTURES = {
    "toy_network.py": "the one-file network tests/ml/models/test_registry.py registers",
}


def _target(test: Path) -> Path:
    """The module a test file is named for (``tests/ml/test_train.py`` -> ``soilcast/ml/train.py``)."""
    rel = test.relative_to(TESTS)
    return PACKAGE.joinpath(*rel.parts[:-1], rel.name.removeprefix("test_"))


def test_every_test_file_names_a_module() -> None:
    tests = [p for p in TESTS.rglob("test_*.py") if p.relative_to(TESTS).as_posix() not in REPO_LEVEL]
    assert len(tests) > 20  # the walk found the suite
    orphans = [p.relative_to(TESTS).as_posix() for p in tests if not _target(p).is_file()]
    assert not orphans, f"test files that mirror no module of src/soilcast: {orphans}"


def test_every_test_folder_is_a_package_folder() -> None:
    folders = {p.parent for p in TESTS.rglob("test_*.py")} - {TESTS}
    missing = [f.relative_to(TESTS).as_posix() for f in folders if not PACKAGE.joinpath(*f.relative_to(TESTS).parts).is_dir()]
    assert not missing, f"test folders with no matching soilcast sub-package: {missing}"


def test_shared_helpers_live_in_soilcast_testing() -> None:
    helpers = [p.name for p in TESTS.rglob("*.py") if not p.name.startswith("test_") and p.name not in ("__init__.py", "conftest.py", *FIXTURES)]
    assert not helpers, f"helper modules in tests/ (move them to soilcast.testing): {helpers}"
