"""Validate the raw files before anything is derived from them.

Two layers: structural checks in plain Python (file readable, variable present, units known
and matching params, regular monotonic coordinates, a complete daily time axis over the
period), then great-expectations suites run on *per-day summary tables* (one row per day per
file: min, max, mean, NaN share) rather than on the raw grids, which keeps GX fast. The
tables come from one streamed pass over each file (``preprocess.time_chunk_days`` days at a
time, as regridding reads), so validation costs one read of the raw data and little memory.

The NaN share is computed over the source file's own domain, excluding cells that are NaN
on every day of the file (ERA5-Land writes the sea as permanently missing). It deliberately
ignores ``grid``: validation must not rerun when only the target grid changes.

The full report (:class:`soilcast.layout.ReportDir`: JSON, daily summary CSV, HTML, GX data
docs) is always written to the report folder; on any failure :class:`DataValidationError` is
raised afterwards.
"""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soilcast.config import Config, VariableSpec
from soilcast.data.readers import (
    DataError,
    accumulation_shift,
    all_specs,
    check_regular,
    days_in_year,
    hash_key,
    open_source,
    source_key,
    source_of,
    source_path,
    unit_token,
)
from soilcast.data.store import file_sha256
from soilcast.io.atomic import atomic_path, atomic_write_json, atomic_write_text, remove_stale_temporaries
from soilcast.layout import ReportDir

DOCS_SITE = "soilcast"
MAX_LISTED = 10  # offending values/dates quoted per failure in messages


class DataValidationError(DataError):
    """Raised after the report is written when any check failed."""

    def __init__(self, message: str, failures: list[dict[str, Any]], report: Path):
        super().__init__(message)
        self.failures = failures
        self.report = report


def _fail(path: Path | str, spec: VariableSpec, check: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"file": str(path), "variable": spec.name, "check": check, "message": message, **extra}


def _dates(days: Iterable[pd.Timestamp]) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in days]


def _stamp_hint(cfg: Config, spec: VariableSpec) -> dict[str, str] | None:
    """For an accumulated variable: its stamping option's key, its value and the other value."""
    if not spec.accumulated:
        return None
    stamp = source_of(cfg, spec).accumulation_stamp
    other = "period_start" if stamp == "end_of_period" else "end_of_period"
    return {"key": f"sources.{source_key(cfg, spec)}.accumulation_stamp", "value": stamp, "other": other}


def _one_day_off(days: pd.DatetimeIndex, expected: pd.DatetimeIndex, hint: dict[str, str] | None) -> str:
    """Why the days may be missing: a whole year one day off is the stamping convention.

    A daily-statistics file (total stamped on its own day) read as ``end_of_period`` lacks the
    year's last day and holds the previous year's; the reverse lacks the first day.
    """
    if hint is None or days.empty:
        return ""
    one = pd.Timedelta(days=1)
    early = hint["value"] == "end_of_period" and expected[-1] not in days and (expected[0] - one) in days
    late = hint["value"] == "period_start" and expected[0] not in days and (expected[-1] + one) in days
    if not (early or late):
        return ""
    return (f"; every day is one day {'early' if early else 'late'}: the file likely stamps daily totals "
            f"{'on the day itself (CDS daily statistics)' if early else 'at the next 00 UTC (ERA5 hourly)'}, "
            f"not as {hint['key']}: {hint['value']} says; set {hint['key']}: {hint['other']}")


def _time_checks(src, spec: VariableSpec, expected: pd.DatetimeIndex,
                 hint: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Daily, monotonic, no duplicates, and every day of the period's share of this year."""
    out = []
    stamps, days = src.raw_times, pd.DatetimeIndex(src.data["time"].values)
    if not np.all(stamps == stamps.floor("D")):
        out.append(_fail(src.path, spec, "time_at_00utc", "time stamps are not at 00 UTC"))
    dup = days[days.duplicated()].unique()
    if len(dup):
        out.append(_fail(src.path, spec, "time_unique", f"duplicated days {_dates(dup[:MAX_LISTED])}",
                         dates=_dates(dup)))
    if not days.is_monotonic_increasing:
        out.append(_fail(src.path, spec, "time_monotonic", "time axis is not increasing"))
    missing = expected.difference(days)
    if len(missing):
        out.append(_fail(src.path, spec, "time_complete",
                         f"{len(missing)} day(s) of the period missing: {_dates(missing[:MAX_LISTED])}"
                         f"{_one_day_off(days, expected, hint)}", dates=_dates(missing)))
    return out


def _daily_summary(src, spec: VariableSpec, chunk_days: int) -> pd.DataFrame:
    """One row per time step: min/max/mean over the file's domain and the NaN share.

    One streamed pass, ``chunk_days`` days at a time in the file's own dtype, so memory is a
    few blocks rather than several float64 copies of the whole year. The domain (cells valid
    on some day; cells NaN on every day are the static sea mask) is known only at the end, so
    each day's NaN count over all cells is kept and the never-valid cells are subtracted
    afterwards: the same shares as counting over the domain. Min/max/mean skip NaN anyway.
    """
    da = src.data
    n = da.sizes["time"]
    stats = {k: np.full(n, np.nan) for k in ("min", "max", "mean")}
    nan_count = np.zeros(n, dtype=np.int64)
    ever_valid: np.ndarray | None = None
    for i in range(0, n, chunk_days):
        block = np.asarray(da.isel(time=slice(i, i + chunk_days)).values)
        flat = block.reshape(block.shape[0], -1)
        nan = np.isnan(flat)
        counts = nan.sum(axis=1)
        valid = flat.shape[1] - counts
        seen = ~nan.all(axis=0)
        ever_valid = seen if ever_valid is None else ever_valid | seen
        rows = slice(i, i + flat.shape[0])
        nan_count[rows] = counts
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN days are reported by GX
            stats["min"][rows] = np.nanmin(flat, axis=1)
            stats["max"][rows] = np.nanmax(flat, axis=1)
            stats["mean"][rows] = np.where(valid > 0, np.nansum(flat, axis=1, dtype=np.float64) / valid, np.nan)
    cells = ever_valid.size if ever_valid is not None else 0
    domain = int(ever_valid.sum()) if ever_valid is not None else 0
    return pd.DataFrame({
        "file": str(src.path),
        "variable": spec.name,
        "date": _dates(pd.DatetimeIndex(da["time"].values)),
        **stats,
        "nan_share": (nan_count - (cells - domain)) / max(domain, 1),
    })


def _check_file(cfg: Config, spec: VariableSpec, year: int, path: Path) -> tuple[list, pd.DataFrame | None]:
    if not path.is_file():
        return [_fail(path, spec, "file_present", f"missing file for year {year}")], None
    return check_file(cfg, spec, path, days_in_year(cfg, year))


def check_file(cfg: Config, spec: VariableSpec, path: Path, expected: pd.DatetimeIndex | None) -> tuple[list, pd.DataFrame | None]:
    """Structural checks and the per-day summary table of one existing raw file.

    ``expected``: the days the file must hold (its year's share of the period for the batch
    stages); ``None`` for a delivery of new days (``soilcast ingest``), which must be complete
    between its own first and last day. Summary rows of expected days get ``in_period``.
    """
    try:
        src = open_source(path, spec, accumulation_shift(cfg, spec))
    except DataError as err:
        return [_fail(path, spec, "readable", str(err))], None
    fails = []
    try:
        have = unit_token(src.raw_units, f"{path}: {spec.source_name}")
        want = unit_token(spec.source_units, f"params: {spec.name}.source_units")
        if have != want:
            fails.append(_fail(path, spec, "units", f"units {src.raw_units!r}, params expect {spec.source_units!r}"))
    except DataError as err:
        fails.append(_fail(path, spec, "units", str(err)))
    try:
        check_regular(src.raw_lat, path, "latitude")
        check_regular(src.raw_lon, path, "longitude")
        check_regular(src.data["lon"].values, path, "longitude (as -180..180)")
    except DataError as err:
        fails.append(_fail(path, spec, "regular_grid", str(err)))
    if expected is None:
        days = pd.DatetimeIndex(src.data["time"].values)
        expected = pd.date_range(days.min(), days.max(), freq="D") if len(days) else days
    fails += _time_checks(src, spec, expected, _stamp_hint(cfg, spec))
    try:
        table = _daily_summary(src, spec, cfg.preprocess.time_chunk_days)
        src.data.close()
    except Exception as err:  # a truncated file can fail only when the data are read
        return fails + [_fail(path, spec, "readable", f"{path}: data unreadable ({type(err).__name__}: {err})")], None
    table["in_period"] = table["date"].isin(set(_dates(expected)))
    return fails, table


def _gx_suite(spec: VariableSpec, max_nan: float):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    lo, hi = spec.valid_range
    suite = gx.ExpectationSuite(name=f"{spec.name}_daily_summary")
    for exp in (
        gxe.ExpectColumnValuesToNotBeNull(column="date"),
        gxe.ExpectColumnValuesToBeUnique(column="date"),
        gxe.ExpectColumnValuesToNotBeNull(column="mean"),
        gxe.ExpectColumnValuesToBeBetween(column="min", min_value=lo, max_value=hi),
        gxe.ExpectColumnValuesToBeBetween(column="max", min_value=lo, max_value=hi),
        gxe.ExpectColumnValuesToBeBetween(column="nan_share", min_value=0.0, max_value=max_nan),
    ):
        suite.add_expectation(exp)
    return suite


def _gx_context(docs_dir: Path):
    """Ephemeral GX context (no analytics, no network) whose data docs go to ``docs_dir``."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    ctx.add_data_docs_site(site_name=DOCS_SITE, site_config={
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    })
    return ctx


def _run_gx(ctx, spec: VariableSpec, table: pd.DataFrame, max_nan: float) -> tuple[list, list]:
    """Validate one variable's summary table; return (failures, raw expectation results)."""
    import great_expectations as gx

    source = ctx.data_sources.add_pandas(f"summary_{spec.name}")
    batch_def = source.add_dataframe_asset(name=spec.name).add_batch_definition_whole_dataframe("all")
    suite = ctx.suites.add(_gx_suite(spec, max_nan))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name=f"raw_{spec.name}", data=batch_def, suite=suite))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(  # a checkpoint run stores results for data docs
        name=f"raw_{spec.name}", validation_definitions=[vd], result_format={"result_format": "COMPLETE"}))
    run = checkpoint.run(batch_parameters={"dataframe": table})
    result = next(iter(run.run_results.values())).to_json_dict()
    fails = []
    for res in result["results"]:
        if res["success"]:
            continue
        conf = res["expectation_config"]
        column = conf["kwargs"].get("column")
        idx = res["result"].get("unexpected_index_list") or []
        rows = table.iloc[idx[:MAX_LISTED]] if idx else table.iloc[:0]
        offending = [{"file": r.file, "date": r.date, "value": _plain(r[column])} for _, r in rows.iterrows()]
        files = sorted(set(table.iloc[idx]["file"])) if idx else ["<all files>"]
        unit, expected = _expected(spec, column, conf["kwargs"])
        where = ", ".join(f"{o['date']}={o['value']}{unit}" for o in offending)
        fails.append({
            "file": ", ".join(files), "variable": spec.name, "check": conf["type"],
            "message": f"{column}: {len(idx)} offending row(s): {where}{expected}", "offending": offending,
        })
    return fails, result["results"]


def _expected(spec: VariableSpec, column: str, kwargs: dict[str, Any]) -> tuple[str, str]:
    """(" <unit>" for the offending values, "; expected ..." naming the range and its params key).

    Why: "max: 2011-02-02=99.0" alone leaves the reader to look up what was allowed and in
    which units (params ranges are in *source* units, before any conversion).
    """
    if "min_value" not in kwargs and "max_value" not in kwargs:
        return "", ""
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if column == "nan_share":
        return "", f"; expected a NaN share {lo}..{hi} of the file's domain (validate.max_nan_fraction)"
    unit = f" {spec.source_units}"
    return unit, f"; expected {lo}..{hi}{unit} (valid_range of {spec.name} in params, source units)"


def _plain(value: Any) -> Any:
    """A JSON-friendly offending value: None for NaN, float for numbers, else as is."""
    if isinstance(value, str):
        return value
    return None if pd.isna(value) else float(value)


def _render_html(report: dict[str, Any], docs: str) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(f['file'])}</td><td>{esc(f['variable'])}</td><td>{esc(f['check'])}</td>"
        f"<td>{esc(f['message'])}</td></tr>" for f in report["failures"]
    ) or "<tr><td colspan=4>none</td></tr>"
    suites = "".join(
        f"<tr><td>{esc(var)}</td><td>{esc(r['expectation_config']['type'])}</td>"
        f"<td>{esc(str(r['expectation_config']['kwargs'].get('column')))}</td>"
        f"<td>{'pass' if r['success'] else 'FAIL'}</td></tr>"
        for var, results in report["expectations"].items() for r in results
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>soilcast validation</title></head>"
        f"<body><h1>Raw data validation: {esc(report['status'])}</h1>"
        f"<p>period {esc(report['period'])}; {report['n_files']} files; "
        f"great-expectations data docs: <a href='{docs}/index.html'>{docs}/index.html</a></p>"
        "<h2>Failures</h2><table border=1><tr><th>file</th><th>variable</th><th>check</th><th>details</th></tr>"
        f"{rows}</table><h2>Expectation suites (per-day summary tables)</h2>"
        "<table border=1><tr><th>variable</th><th>expectation</th><th>column</th><th>result</th></tr>"
        f"{suites}</table></body></html>\n"
    )


def human_summary(failures: list[dict[str, Any]], limit: int = MAX_LISTED) -> str:
    lines = [f"data validation failed: {len(failures)} problem(s)"]
    lines += [f"  {f['file']} [{f['variable']}] {f['check']}: {f['message']}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"  ... and {len(failures) - limit} more (see the report)")
    return "\n".join(lines)


def run_validation(cfg: Config, raw_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Validate every raw met and target file of the period under ``raw_dir``; write the
    report into ``report_dir``; raise on failure."""
    out = ReportDir(Path(report_dir))
    for path in (out.report, out.summary, out.html, out.data_docs):
        remove_stale_temporaries(path)
    failures: list[dict[str, Any]] = []
    tables: list[pd.DataFrame] = []
    hashes: dict[str, str] = {}
    n_files = 0
    import tempfile

    docs_tmp = Path(tempfile.mkdtemp(prefix="gx_docs_"))
    ctx = _gx_context(docs_tmp)
    expectations: dict[str, list] = {}
    for spec in all_specs(cfg):
        var_tables = []
        for year in cfg.period.years:
            path = source_path(cfg, raw_dir, spec, year)
            n_files += 1
            fails, table = _check_file(cfg, spec, year, path)
            failures += fails
            if table is not None:
                var_tables.append(table)
                hashes[hash_key(raw_dir, path)] = file_sha256(path)
        if var_tables:
            table = pd.concat(var_tables, ignore_index=True)
            tables.append(table)
            fails, expectations[spec.name] = _run_gx(ctx, spec, table[table["in_period"]].reset_index(drop=True),
                                                     cfg.validate_.max_nan_fraction)
            failures += fails
    report = {
        "status": "failed" if failures else "passed",
        "period": f"{cfg.period.start}..{cfg.period.end}",
        "n_files": n_files,
        "failures": failures,
        "expectations": expectations,
        "input_hashes": hashes,
    }
    _write_report(out, report, tables, ctx, docs_tmp)
    if failures:
        raise DataValidationError(human_summary(failures), failures, out.report)
    return report


def validate_files(cfg: Config, files: list[tuple[VariableSpec, Path]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The validate stage's checks (structural, then the GX suites per variable) on files that
    are not tied to the period (``soilcast ingest``); returns (failures, {path: sha256}).
    Writes no report: the stage's report describes the batch raw data only."""
    import shutil
    import tempfile

    failures: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    docs_tmp = Path(tempfile.mkdtemp(prefix="gx_docs_"))
    try:
        ctx = _gx_context(docs_tmp)
        for spec in dict.fromkeys(s for s, _ in files):
            tables = []
            for path in (p for s, p in files if s is spec):
                fails, table = check_file(cfg, spec, path, None)
                failures += fails
                if table is not None:
                    tables.append(table)
                    hashes[str(path)] = file_sha256(path)
            if tables:
                fails, _ = _run_gx(ctx, spec, pd.concat(tables, ignore_index=True), cfg.validate_.max_nan_fraction)
                failures += fails
    finally:
        shutil.rmtree(docs_tmp, ignore_errors=True)
    return failures, hashes


def _write_report(out: ReportDir, report: dict[str, Any], tables: list[pd.DataFrame], ctx, docs_tmp: Path) -> None:
    """The report JSON, daily summary CSV, HTML page and GX data docs (``<data_docs>/index.html``)."""
    import shutil

    try:
        ctx.build_data_docs(site_names=[DOCS_SITE])
        with atomic_path(out.data_docs) as tmp:
            shutil.copytree(docs_tmp, tmp)
    finally:
        shutil.rmtree(docs_tmp, ignore_errors=True)
    summary = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    atomic_write_text(out.summary, summary.to_csv(index=False))
    atomic_write_text(out.html, _render_html(report, out.data_docs.name))
    atomic_write_json(out.report, report)


def passed_report(cfg: Config, report_dir: Path) -> dict[str, Any]:
    """The validation report in ``report_dir``, insisting it exists, passed and covers the params period."""
    import json

    path = ReportDir(Path(report_dir)).report
    if not path.is_file():
        raise DataError(f"{path}: no validation report (run 'soilcast validate' first)")
    report = json.loads(path.read_text())
    if report.get("status") != "passed":
        raise DataError(f"{path}: raw data failed validation; fix the inputs and rerun 'soilcast validate'")
    if report.get("period") != f"{cfg.period.start}..{cfg.period.end}":
        raise DataError(
            f"{path}: validation report covers {report.get('period')}, params period is "
            f"{cfg.period.start}..{cfg.period.end}: rerun 'soilcast validate'"
        )
    return report


def validated_hashes(cfg: Config, raw_dir: Path, report_dir: Path, paths: Iterable[Path]) -> dict[str, str]:
    """Hash each raw file once and insist it is byte for byte the file validation passed.

    Why: a stage run directly (CLI, not ``dvc repro``) after a raw file was replaced must not
    derive anything from data nobody checked; the report's sha256 per file is the proof.
    Returns ``{hash_key: sha256}`` of ``paths`` for the stage's own provenance record.
    """
    report = passed_report(cfg, report_dir)
    validated = report.get("input_hashes", {})
    where = ReportDir(Path(report_dir)).report
    out: dict[str, str] = {}
    for path in paths:
        key, now = hash_key(raw_dir, path), file_sha256(path)
        then = validated.get(key)
        if then is None:
            raise DataError(f"{path}: not among the files validated in {where}; rerun 'soilcast validate'")
        if now != then:
            raise DataError(
                f"{path}: changed since it was validated (sha256 now {now[:12]}..., validated "
                f"{then[:12]}... in {where}); rerun 'soilcast validate'"
            )
        out[key] = now
    return out


def check_derived_from_validated(cfg: Config, report_dir: Path, recorded: dict[str, str], what: str) -> None:
    """Insist an intermediate (``what``) was made from exactly the raw files last validated.

    Why: after ``validate`` passes on new raw files, a stage reading intermediates made from
    the old ones would mix data generations; the recorded hashes tell.
    """
    validated = passed_report(cfg, report_dir).get("input_hashes", {})
    stale = sorted(k for k, v in recorded.items() if validated.get(k) != v)
    if stale:
        raise DataError(
            f"{what} was made from raw files other than the ones last validated "
            f"({', '.join(stale[:MAX_LISTED])}); rerun 'soilcast regrid'"
        )
