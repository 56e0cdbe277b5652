"""The standards' own checkers, for tests: IOOS compliance-checker (CF 1.8, ACDD 1.3) on a
NetCDF file and rio-cogeo's Cloud-Optimized GeoTIFF validator on a GeoTIFF.

:func:`check_netcdf` runs ``compliance_checker.runner.ComplianceChecker.run_checker`` (the
checker's public API, JSON report) and returns per checker the failed points per priority
(``high``: CF's errors / ACDD's highly recommended, ``medium``: CF's warnings / ACDD's
recommended, ``low``: suggestions) and the failed checks by name with their messages, so a
test's assertion message names what failed.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHECKERS = ("cf:1.8", "acdd:1.3")
PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class CheckerReport:
    """One checker's result: failed points per priority and the failed checks, by priority,
    as (check name, messages)."""

    checker: str
    failed: dict[str, int]  # priority -> failed points
    possible: dict[str, int]  # priority -> points checked
    failures: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)

    def names(self, priority: str) -> list[str]:
        """'check name: message; message' of every failed check of ``priority``."""
        return [f"{name}: {'; '.join(msgs)}" for name, msgs in self.failures.get(priority, [])]


def check_netcdf(path: Path, checkers: tuple[str, ...] = CHECKERS) -> dict[str, CheckerReport]:
    """Run the compliance checker(s) on ``path``; {checker name: :class:`CheckerReport`}."""
    from compliance_checker.runner import CheckSuite, ComplianceChecker

    CheckSuite.load_all_available_checkers()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        ComplianceChecker.run_checker(str(path), list(checkers), 0, "normal", output_filename=str(report),
                                      output_format="json")
        results = json.loads(report.read_text())
    out = {}
    for name in checkers:
        res = results[name]
        failed, possible, failures = {}, {}, {}
        for priority in PRIORITIES:
            failed[priority] = possible[priority] = 0
            failures[priority] = []
            for check in res.get(f"{priority}_priorities", []):
                scored, total = _points(check["value"])
                failed[priority] += total - scored
                possible[priority] += total
                if scored < total:
                    failures[priority].append((str(check["name"]), [str(m) for m in check.get("msgs", [])]))
        out[name] = CheckerReport(name, failed, possible, failures)
    return out


def _points(value) -> tuple[int, int]:
    """(scored, possible) of a result value: a [scored, possible] pair or a bool."""
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(bool(value)), 1


def check_cog(path: Path) -> tuple[bool, list[str], list[str]]:
    """rio-cogeo's ``cog_validate(path, strict=True)``: (valid, errors, warnings)."""
    from rio_cogeo.cogeo import cog_validate

    valid, errors, warnings = cog_validate(str(path), strict=True)
    return bool(valid), list(errors), list(warnings)


# What soilcast's files cannot honestly carry, so the tests accept these failures and no other:
NO_CF_STANDARD_NAME = ("soil_moisture_anomaly", "percentile")  # the CF table has no anomaly or percentile name
UNFILLED_RECOMMENDED = (  # ACDD recommended attributes soilcast has no true value for
    "creator_url", "creator_email", "publisher_url", "publisher_email",  # soilcast names no contact
    "geospatial_bounds_vertical_crs",  # depth below the land surface has no EPSG vertical CRS
)
# the checker wants geospatial_vertical_min == max == the value of a scalar depth coordinate; the
# files give the layer's extent 0-0.07 m (and depth its bounds) instead
CHECKER_DISAGREEMENTS = ("geospatial_vertical_extents_match",)


def violations(path: Path) -> tuple[list[str], dict[str, CheckerReport]]:
    """(what in ``path`` fails CF-1.8 or ACDD-1.3 beyond the accepted gaps above, the reports):
    every CF high-priority failure (an error), every ACDD highly recommended failure but the
    standard_name of :data:`NO_CF_STANDARD_NAME`, every ACDD recommended failure but
    :data:`UNFILLED_RECOMMENDED` and :data:`CHECKER_DISAGREEMENTS`."""
    reports = check_netcdf(path)
    cf, acdd = reports["cf:1.8"], reports["acdd:1.3"]
    out = [f"CF-1.8 error: {n}" for n in cf.names("high")]
    for name, msgs in acdd.failures["high"]:
        accepted = msgs == ["standard_name"] and any(f'"{v}"' in name for v in NO_CF_STANDARD_NAME)
        if not accepted:
            out.append(f"ACDD-1.3 highly recommended: {name} {'; '.join(msgs)}")
    unfilled = {f"{a} not present" for a in UNFILLED_RECOMMENDED}
    for name, msgs in acdd.failures["medium"]:
        if name == "Global Attributes":
            out += [f"ACDD-1.3 recommended: {m}" for m in msgs if m not in unfilled]
        elif name not in CHECKER_DISAGREEMENTS:
            out.append(f"ACDD-1.3 recommended: {name}: {'; '.join(msgs)}")
    return out, reports


def summary(reports: dict[str, CheckerReport]) -> str:
    """'cf:1.8 failed high 0/199 medium 1/110 ...' per checker: failed/checked points per priority."""
    return "; ".join(f"{n} failed " + " ".join(f"{p} {r.failed[p]}/{r.possible[p]}" for p in PRIORITIES)
                     for n, r in reports.items())
