"""The demo forecast archive: GRIB2 as ECMWF open data writes it, read back to the perturbed truth."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import eccodes
import numpy as np
import pytest
import xarray as xr

from soilcast.config import Config, deep_merge, read_params
from soilcast.data.nwp import read_runs
from soilcast.data.readers import conversion
from soilcast.demo import forecast_archive as fa
from soilcast.demo.geography import geography
from soilcast.demo.weather import daily_weather, draw_textures, draw_year
from soilcast.testing.config import repo_params, tiny_config

INITS = [dt.date(2012, 6, 30), dt.date(2012, 7, 1), dt.date(2012, 7, 2)]
# the tiny configs switch the forecast source off: tests of it take the project's own
SMALL = {"demo": {"forecast_archive": {"years": [2012, 2012]}},
         "sources": {"forecast": read_params(repo_params())["sources"]["forecast"]}}


def grib_messages(path: Path) -> list[dict]:
    """Every message's keys of interest, its values and its bytes."""
    out = []
    with open(path, "rb") as fh:
        while (h := eccodes.codes_grib_new_from_file(fh)) is not None:
            try:
                keys = {k: eccodes.codes_get(h, k) for k in (
                    "shortName", "cfVarName", "units", "centre", "dataDate", "dataTime", "startStep", "endStep",
                    "stepType", "productDefinitionTemplateNumber", "bitsPerValue", "packingError", "Ni", "Nj",
                    "latitudeOfFirstGridPointInDegrees", "latitudeOfLastGridPointInDegrees",
                    "longitudeOfFirstGridPointInDegrees", "longitudeOfLastGridPointInDegrees")}
                keys["values"] = eccodes.codes_get_values(h)
                keys["bytes"] = eccodes.codes_get_message(h)
                out.append(keys)
            finally:
                eccodes.codes_release(h)
    return out


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, list[Path]]:
    root = tmp_path_factory.mktemp("forecast_archive")
    cfg = tiny_config(root, SMALL)
    return cfg, fa.write_archive(cfg, cfg.paths.raw_dir, inits=INITS)


def perturbed_truth(cfg: Config, init: dt.date) -> np.ndarray:
    """[K+1, H, W, C] canonical, latitude ascending: what the run of ``init`` must hold."""
    world = fa._world(cfg)
    try:
        truth = fa._truth(cfg, world.geo, world.textures, fa._days(init, cfg.window.max_lead + 1))
        return fa._forecast(world, init, truth)[:, ::-1], truth[:, ::-1]  # (perturbed, true)
    finally:
        world.close()


def test_one_file_per_month_named_and_placed_as_params_say(archive):
    cfg, files = archive
    folder = Path(cfg.paths.raw_dir) / cfg.sources.forecast.folder
    assert files == [folder / "2012-06.grib2", folder / "2012-07.grib2"]
    dates = [sorted({m["dataDate"] for m in grib_messages(f)}) for f in files]
    assert dates == [[20120630], [20120701, 20120702]]


def test_messages_follow_ecmwf_conventions(archive):
    cfg, files = archive
    msgs = grib_messages(files[1])
    K, sh = cfg.window.max_lead, cfg.demo.forecast_archive.step_hours
    lat, lon = fa.cutout_axes(cfg)
    per_run = sum(len(fa.steps(cfg, s)) for s in cfg.variables)
    assert len(msgs) == 2 * per_run
    for m in msgs:
        assert m["centre"] == "ecmf" and m["dataTime"] == 0
        if np.ptp(m["values"]) > 0:  # eccodes packs a constant field (step 0's zeros) in 0 bits
            assert m["bitsPerValue"] == cfg.demo.forecast_archive.bits_per_value
        assert m["latitudeOfFirstGridPointInDegrees"] > m["latitudeOfLastGridPointInDegrees"]  # north to south
        assert (m["Nj"], m["Ni"]) == (lat.size, lon.size)
    # the cut-out reaches margin_deg beyond the target grid's outermost centres (within a met cell)
    m0, margin, met = msgs[0], cfg.demo.forecast_archive.margin_deg, cfg.demo.met_grid.res
    assert cfg.grid.lat_max + margin - met < m0["latitudeOfFirstGridPointInDegrees"] <= cfg.grid.lat_max + margin
    assert cfg.grid.lon_min - margin <= m0["longitudeOfFirstGridPointInDegrees"] < cfg.grid.lon_min - margin + met
    by_name = {}
    for m in msgs:
        by_name.setdefault(m["cfVarName"], []).append(m)
    assert set(by_name) == {s.source_name for s in cfg.variables}
    for spec in cfg.variables:
        got = by_name[spec.source_name]
        assert {m["units"] for m in got} == {spec.source_units}
        assert {m["shortName"] for m in got} == {fa.GRIB_SHORT_NAMES[spec.name]}
        ends = sorted({m["endStep"] for m in got})
        if spec.accumulated:
            assert {m["productDefinitionTemplateNumber"] for m in got} == {8}
            assert {m["stepType"] for m in got} == {"accum"} and {m["startStep"] for m in got} == {0}
            assert ends == list(range(0, 24 * (K + 1) + 1, sh))
            zero = [m for m in got if m["endStep"] == 0]
            assert len(zero) == 2 and all(np.all(m["values"] == 0) for m in zero)
            run = sorted((m for m in got if m["dataDate"] == 20120701), key=lambda m: m["endStep"])
            acc = np.stack([m["values"] for m in run])
            assert np.all(np.diff(acc, axis=0) >= -2 * max(m["packingError"] for m in run))  # from the run start
        else:
            assert {m["productDefinitionTemplateNumber"] for m in got} == {0}
            assert {m["startStep"] for m in got} == set(ends) and ends[0] > 0
            assert ends == list(range(sh, 24 * (K + 1), sh))


def test_cfgrib_sees_steps_valid_times_and_short_names(archive):
    cfg, files = archive
    kw = {"indexpath": ""}
    with xr.open_dataset(files[0], engine="cfgrib", backend_kwargs={**kw, "filter_by_keys": {"stepType": "accum"}}) as ds:
        assert {"tp", "ssrd"} <= set(ds.data_vars)
        assert ds["tp"].attrs["GRIB_shortName"] == "tp" and ds["tp"].attrs["units"] == "m"
        assert ds["step"].values[0] == np.timedelta64(0, "ns")
        np.testing.assert_array_equal(ds["valid_time"].values, ds["time"].values + ds["step"].values)
        assert float(ds["tp"].isel(step=0).max()) == 0.0
    with xr.open_dataset(files[0], engine="cfgrib", backend_kwargs={
            **kw, "filter_by_keys": {"stepType": "instant", "typeOfLevel": "heightAboveGround", "level": 2}}) as ds:
        assert {"t2m", "d2m"} <= set(ds.data_vars)
        assert ds["t2m"].attrs["GRIB_shortName"] == "2t" and ds.sizes["step"] == cfg.window.max_lead
    with xr.open_dataset(files[0], engine="cfgrib", backend_kwargs={
            **kw, "filter_by_keys": {"typeOfLevel": "heightAboveGround", "level": 10}}) as ds:
        assert {"u10", "v10"} <= set(ds.data_vars)


def test_read_back_equals_the_perturbed_truth_within_packing(archive):
    cfg, files = archive
    runs = read_runs(cfg, Path(cfg.paths.raw_dir) / cfg.sources.forecast.folder)
    assert [r.init.date() for r in runs] == INITS
    assert all(r.centre == "ecmf" for r in runs)
    msgs = grib_messages(files[1])
    run = runs[1]
    expected, truth = perturbed_truth(cfg, run.init.date())
    leads = list(cfg.window.leads)
    errors = {}
    for c, spec in enumerate(cfg.variables):
        scale, _ = conversion(spec)
        pack = max(m["packingError"] for m in msgs if m["cfVarName"] == spec.source_name)
        tol = (2 if spec.accumulated else 1) * pack * abs(scale) * 1.001 + 1e-4
        got = run.fields[spec.name]
        assert got.dims == ("lead", "lat", "lon") and list(got["lead"].values) == leads
        assert np.all(np.diff(got["lat"].values) > 0) and np.all(np.diff(got["lon"].values) > 0)
        np.testing.assert_allclose(got.values, expected[leads, ..., c], rtol=0, atol=tol, err_msg=spec.name)
        errors[spec.name] = np.sqrt(np.mean((expected[leads, ..., c] - truth[leads, ..., c]) ** 2, axis=(1, 2)))
    # a forecast, not the truth: the error grows with lead
    for name in ("t2m", "sp", "u10"):
        assert errors[name][0] > 0 and errors[name][-1] > 1.5 * errors[name][0], (name, errors[name])


def test_truth_is_the_demo_weather_on_the_cutout(archive):
    """The unperturbed values are daily_weather on the cut-out grid (the demo's reanalysis world)."""
    cfg, _ = archive
    lat, lon = fa.cutout_axes(cfg)
    days = fa._days(INITS[0], 3)
    w = daily_weather(geography(lat, lon), days, draw_textures(cfg.demo.seed),
                      {y: draw_year(cfg.demo.seed, y) for y in (2011, 2012)})
    world = fa._world(cfg)
    try:
        truth = fa._truth(cfg, world.geo, world.textures, days)
    finally:
        world.close()
    names = cfg.variable_names
    np.testing.assert_allclose(truth[..., names.index("tp")], w.precip, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(truth[..., names.index("t2m")], w.t2m, rtol=1e-6)
    np.testing.assert_allclose(truth[..., names.index("sp")], w.sp / 100.0, rtol=1e-6)


def test_write_run_is_the_archive_run_and_deterministic(archive, tmp_path):
    cfg, files = archive
    single = fa.write_run(cfg, INITS[1], tmp_path / "latest.grib2")
    in_month = b"".join(m["bytes"] for m in grib_messages(files[1]) if m["dataDate"] == 20120701)
    assert single.read_bytes() == in_month
    again = fa.write_archive(cfg, tmp_path / "again", inits=INITS)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in files]


def test_sub_daily_steps_read_back_to_the_same_days(tmp_path):
    cfg = tiny_config(tmp_path, deep_merge(SMALL, {"demo": {"forecast_archive": {"step_hours": 6}},
                                                   "window": {"leads": [1, 2, 3]}}))
    path = fa.write_run(cfg, INITS[1], tmp_path / "run.grib2")
    msgs = grib_messages(path)
    assert sorted({m["endStep"] for m in msgs if m["cfVarName"] == "t2m"}) == list(range(6, 96, 6))
    assert sorted({m["endStep"] for m in msgs if m["cfVarName"] == "tp"}) == list(range(0, 97, 6))
    run = read_runs(cfg, path)[0]
    expected, _ = perturbed_truth(cfg, INITS[1])
    for c, spec in enumerate(cfg.variables):
        scale, _ = conversion(spec)
        pack = max(m["packingError"] for m in msgs if m["cfVarName"] == spec.source_name)
        tol = 2 * pack * abs(scale) * 1.001 + 1e-4
        np.testing.assert_allclose(run.fields[spec.name].values, expected[[1, 2, 3], ..., c], rtol=0, atol=tol,
                                   err_msg=spec.name)
