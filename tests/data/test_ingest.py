"""``soilcast ingest``: new days appended through the batch stages' functions, atomically.

The strongest check: a store cut short by 30 days, re-fed the original year files, must come
back equal to the store the batch ``stack`` stage wrote (the overlap is accepted because it
agrees, the rest is appended). Refusals (gap, disagreeing overlap, broken file, missing
variable) must name the file and dates and leave the store byte-identical. Overlapping runs
(a cron run meets a hand run) append once: the second is refused with the first named, and
what killed runs left beside the store is repaired on the next start.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import soilcast
from soilcast.config import save_config
from soilcast.data.ingest import INGESTED_ATTR
from soilcast.data.readers import DataError, all_specs
from soilcast.data.store import open_tensors
from soilcast.io.lock import LockBusy
from soilcast.testing.config import tiny_config
from soilcast.testing.locks import held_elsewhere
from soilcast.testing.stages import ingest, source_path

NEW_LAST = dt.date(2014, 1, 30)


def tree_digest(path: Path) -> str:
    """sha256 over every file's relative name and bytes: 'byte-identical store'."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def delivery(prepared_tiny, tmp_path_factory) -> Path:
    """The demo generator's files for 2014-01-01..30, continuing the tiny demo."""
    from soilcast.demo.generate import generate_delivery

    out = tmp_path_factory.mktemp("delivery")
    files = generate_delivery(prepared_tiny, out, dt.date(2014, 1, 1), NEW_LAST)
    assert len(files) == 8
    return out


def own_store(prepared_tiny, root: Path, keep_until: str | None = None):
    """A config under ``root`` with a copy of the prepared tiny store, optionally cut short."""
    cfg = tiny_config(root)
    src = open_tensors(prepared_tiny.paths.processed, load=False)
    if keep_until is None:
        shutil.copytree(prepared_tiny.paths.processed, cfg.paths.processed)
    else:
        ds = xr.open_zarr(prepared_tiny.paths.processed).sel(time=slice(None, keep_until)).load()
        for v in ds.variables.values():
            v.encoding = {}
        ds.to_zarr(cfg.paths.processed, mode="w", consolidated=True)
    assert open_tensors(cfg.paths.processed, load=False).time[0] == src.time[0]
    return cfg


def year_files(cfg, year: int, out: Path) -> Path:
    """A delivery folder holding the original raw files of ``year`` (flat layout)."""
    out.mkdir(parents=True)
    for spec in all_specs(cfg):
        path = source_path(cfg, spec, year)
        shutil.copyfile(path, out / f"{spec.source_name}_{year}.nc")
    return out


def test_refed_days_equal_what_stack_wrote(prepared_tiny, tmp_path):
    cfg = own_store(prepared_tiny, tmp_path / "a", keep_until="2013-12-01")
    incoming = year_files(prepared_tiny, 2013, tmp_path / "in")
    result = ingest(cfg, incoming)
    assert [str(d.date()) for d in result.added[[0, -1]]] == ["2013-12-02", "2013-12-31"]
    assert len(result.already) == 335  # 2013-01-01..12-01 re-delivered, identical
    got, want = open_tensors(cfg.paths.processed), open_tensors(prepared_tiny.paths.processed)
    assert got.time.equals(want.time)
    np.testing.assert_allclose(got.X, want.X, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got.Y, want.Y, rtol=1e-6, atol=1e-6)
    assert np.isnan(got.Y[:, ~got.mask]).all() and np.isfinite(got.Y[:, got.mask]).all()
    records = got.attrs[INGESTED_ATTR]
    assert {r["variable"] for r in records} == {s.name for s in all_specs(cfg)}
    tp = next(r for r in records if r["variable"] == "tp")
    assert tp["file"] == "tp_2013.nc" and (tp["first_day"], tp["last_day"]) == ("2013-12-02", "2013-12-31")
    assert tp["sha256"] == hashlib.sha256((incoming / "tp_2013.nc").read_bytes()).hexdigest()


def test_new_days_appended_then_same_files_are_nothing_to_do(prepared_tiny, delivery, tmp_path):
    cfg = own_store(prepared_tiny, tmp_path)
    before = open_tensors(prepared_tiny.paths.processed)
    first = ingest(cfg, delivery)
    assert len(first.added) == 30 and first.added[0] == pd.Timestamp("2014-01-01")
    t = open_tensors(cfg.paths.processed)
    assert t.time[-1] == pd.Timestamp(NEW_LAST) and len(t.time) == len(before.time) + 30
    np.testing.assert_array_equal(t.X[: len(before.time)], before.X)  # old days untouched
    assert np.isnan(t.Y[-30:, ~t.mask]).all() and np.isfinite(t.Y[-30:, t.mask]).all()
    inside = t.X[-30:, t.mask]
    assert np.isfinite(inside).all() and 250 < inside[..., 1].mean() < 310  # January t2m, K
    assert {(r["first_day"], r["last_day"]) for r in t.attrs[INGESTED_ATTR]} == {("2014-01-01", "2014-01-30")}
    digest = tree_digest(cfg.paths.processed)
    again = ingest(cfg, delivery)
    assert len(again.added) == 0 and len(again.already) == 30
    assert tree_digest(cfg.paths.processed) == digest


def test_store_longer_than_period_keeps_the_splits(prepared_tiny, delivery, tmp_path):
    """Training and evaluation read the store by split years: ingested days join no split."""
    from soilcast.ml.models.references import Climatology
    from soilcast.ml.windows import split_ends
    from soilcast.testing.stages import load_tensors

    cfg = own_store(prepared_tiny, tmp_path)
    ingest(cfg, delivery)
    longer, base = load_tensors(cfg), load_tensors(prepared_tiny)
    assert len(longer.time) == cfg.period.n_days + 30
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(split_ends(cfg, longer.time, split), split_ends(cfg, base.time, split))
    np.testing.assert_array_equal(Climatology.from_config(cfg, longer.Y, longer.time).values,
                                  Climatology.from_config(cfg, base.Y, base.time).values)


def test_gap_refused_naming_files_and_days(prepared_tiny, delivery, tmp_path):
    cfg = own_store(prepared_tiny, tmp_path, keep_until="2013-11-30")
    digest = tree_digest(cfg.paths.processed)
    with pytest.raises(DataError) as err:
        ingest(cfg, delivery)
    msg = str(err.value)
    assert "store ends 2013-11-30" in msg and "start 2014-01-01" in msg and "2013-12-01..2013-12-31" in msg
    assert "tp_2014.nc" in msg and "swvl1_2014.nc" in msg
    assert tree_digest(cfg.paths.processed) == digest


def test_disagreeing_overlap_refused(prepared_tiny, tmp_path):
    cfg = own_store(prepared_tiny, tmp_path / "a", keep_until="2013-12-01")
    incoming = year_files(prepared_tiny, 2013, tmp_path / "in")
    with netCDF4.Dataset(incoming / "t2m_2013.nc", "r+") as nc:
        times = nc["valid_time"]
        k = int(np.flatnonzero(netCDF4.num2date(times[:], times.units) == dt.datetime(2013, 6, 1))[0])
        nc["t2m"][k] = nc["t2m"][k] + 1.5
    digest = tree_digest(cfg.paths.processed)
    with pytest.raises(DataError) as err:
        ingest(cfg, incoming)
    msg = str(err.value)
    assert "disagree" in msg and "t2m on 2013-06-01" in msg and "t2m_2013.nc" in msg
    assert "tp " not in msg  # only the revised variable is named
    assert tree_digest(cfg.paths.processed) == digest


def test_broken_file_refused_store_byte_identical(prepared_tiny, delivery, tmp_path):
    cfg = own_store(prepared_tiny, tmp_path / "a")
    incoming = tmp_path / "in"
    shutil.copytree(delivery, incoming)
    broken = incoming / "era5" / "sp_2014.nc"
    broken.write_bytes(broken.read_bytes()[:2000])  # a truncated download
    digest = tree_digest(cfg.paths.processed)
    with pytest.raises(DataError, match=r"sp_2014\.nc.*cannot be read"):
        ingest(cfg, incoming)
    assert tree_digest(cfg.paths.processed) == digest


def test_validation_failure_names_file_and_day(prepared_tiny, delivery, tmp_path):
    """The validate stage's GX range check applies to deliveries too."""
    cfg = own_store(prepared_tiny, tmp_path / "a")
    incoming = tmp_path / "in"
    shutil.copytree(delivery, incoming)
    with netCDF4.Dataset(incoming / "era5" / "t2m_2014.nc", "r+") as nc:
        nc["t2m"][9, 3, 3] = 400.0  # K, outside valid_range; stamp 2014-01-10
    digest = tree_digest(cfg.paths.processed)
    with pytest.raises(DataError) as err:
        ingest(cfg, incoming)
    assert "t2m_2014.nc" in str(err.value) and "2014-01-10" in str(err.value)
    assert tree_digest(cfg.paths.processed) == digest


def test_missing_variable_and_uneven_days_refused(prepared_tiny, delivery, tmp_path):
    cfg = own_store(prepared_tiny, tmp_path / "a")
    incoming = tmp_path / "in"
    shutil.copytree(delivery, incoming)
    (incoming / "era5" / "sp_2014.nc").unlink()
    with pytest.raises(DataError, match=r"no file delivers variable\(s\) \['sp'\]"):
        ingest(cfg, incoming)
    ds = xr.load_dataset(delivery / "era5" / "sp_2014.nc")
    tname = "valid_time" if "valid_time" in ds.dims else "time"
    ds.isel({tname: slice(0, 20)}).to_netcdf(incoming / "era5" / "sp_2014.nc")
    with pytest.raises(DataError) as err:
        ingest(cfg, incoming)
    assert "sp covers 2014-01-01..2014-01-20" in str(err.value) and "sp_2014.nc" in str(err.value)


def test_ingest_cli(prepared_tiny, delivery, tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app

    cfg = own_store(prepared_tiny, tmp_path / "a")
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    first = CliRunner().invoke(app, ["ingest", str(delivery), "--params", str(params)])
    assert first.exit_code == 0, first.output
    assert "ingested 30 day(s) 2014-01-01..2014-01-30 from 8 file(s)" in first.output
    again = CliRunner().invoke(app, ["ingest", str(delivery), "--params", str(params)])
    assert again.exit_code == 0 and "nothing to do" in again.output
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = CliRunner().invoke(app, ["ingest", str(empty), "--params", str(params)])
    assert bad.exit_code == 1 and "no .nc files" in bad.output


def test_hidden_partial_downloads_are_skipped(prepared_tiny, delivery, tmp_path):
    from soilcast.data.ingest import find_files

    incoming = tmp_path / "in"
    shutil.copytree(delivery, incoming)
    (incoming / ".partial").mkdir()
    (incoming / ".partial" / "tp_2014.nc").write_bytes(b"half a download")
    (incoming / "era5" / ".sp_2014.nc").write_bytes(b"half a download")
    assert len(find_files(incoming)) == 8
    cfg = own_store(prepared_tiny, tmp_path / "a")
    assert len(ingest(cfg, incoming).added) == 30


def test_an_ingest_meanwhile_is_refused_and_changes_nothing(prepared_tiny, delivery, tmp_path):
    from typer.testing import CliRunner

    from soilcast.cli import app
    from soilcast.commands.common import LOCK_BUSY_EXIT

    cfg = own_store(prepared_tiny, tmp_path / "a")
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    store = cfg.paths.processed
    digest = tree_digest(store)
    with held_elsewhere(store, "ingest"):
        with pytest.raises(LockBusy) as err:
            ingest(cfg, delivery)
        cli = CliRunner().invoke(app, ["ingest", str(delivery), "--params", str(params)])
    assert str(err.value).startswith(f"another ingest of {store} is running (pid {os.getpid()} on host ")
    assert "nothing was changed — run again when it has finished" in str(err.value)
    assert cli.exit_code == LOCK_BUSY_EXIT == 75 and f"another ingest of {store} is running (pid" in cli.output
    assert tree_digest(store) == digest and sorted(p.name for p in store.parent.iterdir() if p.name.startswith(
        ".tensors.zarr")) == [".tensors.zarr.lock"]
    assert len(ingest(cfg, delivery).added) == 30  # run again once the first has finished


def test_two_ingests_at_once_append_the_days_once(prepared_tiny, delivery, tmp_path):
    """Two real processes (a cron run and a hand run) on one store: one appends, the other is
    refused (exit 75) or, started after the first finished, has nothing to do."""
    cfg = own_store(prepared_tiny, tmp_path / "a")
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    n_days = len(open_tensors(cfg.paths.processed, load=False).time)
    src = str(Path(soilcast.__file__).parents[1])  # the checkout under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    runs = [subprocess.Popen([sys.executable, "-m", "soilcast", "ingest", str(delivery), "--params", str(params)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            for _ in range(2)]
    outs = [(run.wait(), run.stdout.read()) for run in runs]
    appended = [out for code, out in outs if code == 0 and "ingested 30 day(s)" in out]
    other = [(code, out) for code, out in outs if not (code == 0 and "ingested 30 day(s)" in out)]
    assert len(appended) == 1 and len(other) == 1, outs
    code, out = other[0]
    assert (code == 75 and "another ingest of" in out and "is running (pid" in out) or (
        code == 0 and "nothing to do" in out), outs
    time = open_tensors(cfg.paths.processed, load=False).time
    assert time.is_unique and len(time) == n_days + 30


def test_a_store_left_as_old_by_a_killed_ingest_is_recovered(prepared_tiny, delivery, tmp_path):
    """Killed between its two renames, an ingest left the store only as ``.tensors.zarr.old``
    (and a killed copy left a temporary): the next ingest puts it back, removes the temporary,
    says so, and proceeds."""
    from typer.testing import CliRunner

    from soilcast.cli import app

    cfg = own_store(prepared_tiny, tmp_path / "a")
    params = tmp_path / "params.yaml"
    save_config(cfg, params)
    store = cfg.paths.processed
    old = store.with_name(".tensors.zarr.old")
    store.rename(old)
    stale = store.with_name(".tensors.zarr.abc123.tmp")
    (stale / "tensors.zarr").mkdir(parents=True)
    (stale / "tensors.zarr" / "chunk").write_bytes(b"a killed ingest's partial copy")
    result = ingest(cfg, delivery)
    assert result.recovered == old and result.swept == [stale]
    assert len(result.added) == 30 and not old.exists() and not stale.exists()
    assert open_tensors(store, load=False).time[-1] == pd.Timestamp(NEW_LAST)
    store.rename(old)  # again, through the CLI: it tells the operator
    stale.mkdir()
    cli = CliRunner().invoke(app, ["ingest", str(delivery), "--params", str(params)])
    assert cli.exit_code == 0, cli.output
    assert f"recovered {store} from {old}" in cli.output and f"removed {stale}" in cli.output
    assert "nothing to do" in cli.output and not old.exists() and not stale.exists()
