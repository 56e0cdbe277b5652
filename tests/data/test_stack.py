"""The tensor store: shapes, attributes, NaN exactly outside the mask, X/Y time alignment."""

from __future__ import annotations

import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import zarr

from soilcast.data.clip import build_mask
from soilcast.data.readers import DataError
from soilcast.data.regrid import regrid_all, regridded_path
from soilcast.data.stack import stack_tensors
from soilcast.data.store import open_tensors
from soilcast.testing.rawdata import EXPECTED, expected, passed_report, small_config, write_raw


@pytest.fixture(scope="module")
def stacked(tmp_path_factory):
    cfg = small_config(tmp_path_factory.mktemp("stack"))
    write_raw(cfg)
    passed_report(cfg)
    regrid_all(cfg)
    build_mask(cfg)
    stack_tensors(cfg)
    return cfg


def test_shapes_dtypes_and_attrs(stacked):
    cfg = stacked
    t = open_tensors(cfg.paths.processed)
    n, (h, w) = cfg.period.n_days, cfg.grid.shape
    assert t.X.shape == (n, h, w, 7) and t.Y.shape == (n, h, w, 1)
    assert t.X.dtype == np.float32 and t.Y.dtype == np.float32
    assert t.variables == cfg.variable_names == ["tp", "t2m", "d2m", "u10", "v10", "ssrd", "sp"]
    assert t.attrs["target"] == "swvl1"
    assert t.attrs["units"] == {"tp": "mm/day", "t2m": "K", "d2m": "K", "u10": "m/s", "v10": "m/s",
                                "ssrd": "W/m2", "sp": "hPa", "swvl1": "m3/m3"}
    assert t.attrs["basin_names"] == {"1": "north", "2": "south"}
    hashes = t.attrs["input_hashes"]
    assert "basins/demo_regions.geojson" in hashes and "era5/tp_2011.nc" in hashes
    assert len(hashes) == 8 * len(cfg.period.years) + 1
    assert np.all(np.diff(t.lat) > 0) and np.all(np.diff(t.lon) > 0)
    assert t.time[0].date() == cfg.period.start and t.time[-1].date() == cfg.period.end
    # streamed in time_chunk_days blocks: the zarr chunks follow them
    assert zarr.open_group(str(cfg.paths.processed), mode="r")["X"].chunks[0] == cfg.preprocess.time_chunk_days


def test_nan_exactly_outside_mask(stacked):
    t = open_tensors(stacked.paths.processed)
    assert t.mask.sum() == 18 and np.array_equal(t.mask, t.basin_id > 0)
    assert not np.isnan(t.X[:, t.mask]).any() and not np.isnan(t.Y[:, t.mask]).any()
    # the mask restricts the target only: weather is kept over the whole grid
    assert not np.isnan(t.X).any() and np.isnan(t.Y[:, ~t.mask]).all()


def test_ramps_land_on_the_right_dates(stacked):
    """Day d of the store holds day d's values, incl. accumulations stamped at d+1 00 UTC."""
    t = open_tensors(stacked.paths.processed)
    d = np.arange(len(t.time))
    for k, spec in enumerate(stacked.variables):
        assert t.variables[k] == spec.name
        np.testing.assert_allclose(t.X[:, t.mask, k], np.repeat(expected(spec)(d)[:, None], t.mask.sum(), 1),
                                   rtol=1e-6, err_msg=spec.name)
    np.testing.assert_allclose(t.Y[:, t.mask, 0], np.repeat(EXPECTED["swvl1"](d)[:, None], t.mask.sum(), 1), rtol=1e-6)


def test_stage_plots_written(stacked):
    out = Path(stacked.paths.artifacts_dir) / "plots" / "inputs"
    for name in ("monsoon.png", "dry.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _copy_with_nan(stacked, root: Path, fill_rule: str):
    """A copy of the prepared interim data with NaN in t2m at a mask cell on days 5-6."""
    cfg = small_config(root, {"preprocess": {"fill_rule": fill_rule}})
    shutil.copytree(stacked.paths.interim_dir, cfg.paths.interim_dir)
    shutil.copytree(stacked.validate_.report_dir, cfg.validate_.report_dir)
    shutil.copytree(Path(stacked.paths.raw_dir) / "basins", Path(cfg.basins.path).parent)
    with netCDF4.Dataset(regridded_path(cfg, "t2m"), "r+") as nc:
        nc["t2m"][5:7, 2, 2] = np.nan  # lat 12.5, lon 72.5: inside the mask
    return cfg


def test_nan_inside_mask_fails_naming_dates_and_cells(stacked, tmp_path):
    cfg = _copy_with_nan(stacked, tmp_path, "fail")
    shutil.copytree(stacked.paths.processed, cfg.paths.processed)
    before = open_tensors(cfg.paths.processed).X
    with pytest.raises(DataError) as err:
        stack_tensors(cfg)
    msg = str(err.value)
    assert "t2m" in msg and "2011-01-03" in msg and "2011-01-04" in msg and "(12.5, 72.5)" in msg
    np.testing.assert_array_equal(open_tensors(cfg.paths.processed).X, before)  # previous store intact


def test_nearest_time_fill(stacked, tmp_path):
    cfg = _copy_with_nan(stacked, tmp_path, "nearest_time")
    stack_tensors(cfg, plots=False)
    x = open_tensors(cfg.paths.processed).X[:, 2, 2, 1]
    assert x[5] == x[4] and x[6] == x[7]  # each gap day takes its nearest valid day


def test_stack_rejects_grid_mismatch(stacked, tmp_path):
    cfg = small_config(tmp_path, {"grid": {"res": 0.5}})
    shutil.copytree(stacked.paths.interim_dir, cfg.paths.interim_dir)
    with pytest.raises(DataError, match="grid differs"):
        stack_tensors(cfg)


def test_tiny_demo_prepared(prepared_tiny):
    """The real demo generator through all four stages (shared session fixture)."""
    cfg = prepared_tiny
    t = open_tensors(cfg.paths.processed)
    assert t.X.shape == (cfg.period.n_days, *cfg.grid.shape, 7) and t.Y.shape[-1] == 1
    assert t.mask.any() and np.array_equal(t.mask, t.basin_id > 0)
    assert not np.isnan(t.X).any() and np.isnan(t.Y[:, ~t.mask]).all()  # X unmasked, Y masked
    assert len(t.attrs["input_hashes"]) == 8 * len(cfg.period.years) + 1
    inside = {name: t.X[:, t.mask, k] for k, name in enumerate(t.variables)}
    assert inside["tp"].min() >= 0 and 150 < inside["t2m"].mean() < 330 and 500 < inside["sp"].mean() < 1100
    assert 0 <= np.nanmin(t.Y) and np.nanmax(t.Y) <= 0.8
    for name in ("monsoon.png", "dry.png"):
        assert (Path(cfg.paths.artifacts_dir) / "plots" / "inputs" / name).is_file()


def test_dvc_wiring_basins_and_grid():
    """Basins edits rerun clip + stack only; grid edits rerun regrid onwards, not validate."""
    import yaml

    stages = yaml.safe_load((Path(__file__).parents[2] / "dvc.yaml").read_text())["stages"]
    for name in ("validate", "regrid"):
        assert not any("basins" in str(d) for d in stages[name]["deps"] + stages[name]["params"])
        assert "${paths.raw_dir}" not in stages[name]["deps"]
        assert {"${paths.raw_dir}/${sources.met.folder}", "${paths.raw_dir}/${sources.target.folder}"} \
            <= set(stages[name]["deps"])
    assert "grid" not in stages["validate"]["params"]
    for name in ("regrid", "clip", "stack"):
        assert "grid" in stages[name]["params"]
    assert "basins" in stages["clip"]["params"] and "${basins.path}" in stages["clip"]["deps"]
    assert {"${paths.interim_dir}/regridded", "${paths.interim_dir}/mask.nc", "${validate.report_dir}"} \
        <= set(stages["stack"]["deps"])


def test_dvc_reads_data_folders_from_params(tmp_path):
    """Raw folders renamed in params.yaml alone: the real dvc resolves dvc.yaml to the new ones."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).parents[2]
    beside = Path(sys.executable).parent / "dvc"  # installed with the project, in its venv
    dvc = str(beside) if beside.is_file() else shutil.which("dvc")
    assert dvc, "the dvc executable must be installed (it is in requirements.lock)"
    shutil.copy(repo / "dvc.yaml", tmp_path / "dvc.yaml")
    params = (repo / "params.yaml").read_text()
    for old, new in (("raw_dir: data/raw", "raw_dir: inputs"), ("interim_dir: data/interim", "interim_dir: work"),
                     ("folder: era5,", "folder: met,"), ("folder: era5land,", "folder: soil,")):
        assert params.count(old) == 1, old
        params = params.replace(old, new)
    (tmp_path / "params.yaml").write_text(params)
    for sub in ("met", "soil"):
        (tmp_path / "inputs" / sub).mkdir(parents=True)
        (tmp_path / "inputs" / sub / "x_2010.nc").write_bytes(b"x")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    run = lambda *a: subprocess.run(a, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run("git", "init", "-q").returncode == 0 and run(dvc, "init", "-q").returncode == 0
    dag = run(dvc, "dag")
    assert dag.returncode == 0 and "validate" in dag.stdout, dag.stderr
    status = run(dvc, "status", "--json")
    assert status.returncode == 0, status.stderr
    deps = {k: v for entry in json.loads(status.stdout)["regrid"] for k, v in entry.get("changed deps", {}).items()}
    assert {"inputs/met", "inputs/soil"} <= set(deps) and deps["inputs/met"] != "deleted"
    assert not any(d.startswith("data/") for d in deps), deps
    outs = {k for entry in json.loads(status.stdout)["regrid"] for k in entry.get("changed outs", {})}
    assert outs == {"work/regridded"}


def _leftovers(target: Path) -> list[Path]:
    """Fake what a run killed inside atomic_path leaves: a hidden temp dir and a .old copy."""
    made = [target.parent / f".{target.name}.k1ll3d.tmp" / target.name, target.with_name(f".{target.name}.old")]
    for p in made:
        p.mkdir(parents=True)
        (p / "chunk").write_bytes(b"x" * 10)
    return [made[0].parent, made[1]]


def test_stages_remove_stale_temporaries_of_their_outputs(tmp_path):
    from soilcast.data.regrid import regridded_dir

    cfg = small_config(tmp_path)
    write_raw(cfg)
    passed_report(cfg)
    stale = [*_leftovers(regridded_dir(cfg)), *_leftovers(Path(cfg.paths.interim_dir) / "mask.nc"),
             *_leftovers(Path(cfg.paths.processed))]
    other = Path(cfg.paths.interim_dir) / ".notes.abc.tmp"  # not an output of these stages: kept
    other.write_text("keep")
    regrid_all(cfg)
    build_mask(cfg)
    stack_tensors(cfg, plots=False)
    assert [p for p in stale if p.exists()] == [] and other.read_text() == "keep"
