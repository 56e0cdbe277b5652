"""The tensor store: write/open round trip, dtypes, attributes, laziness, atomic rewrites,
shape checks, and the contract (Y NaN exactly outside the mask, X finite) of the synthetic
store the model and serving tests are built on."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
import zarr

from soilcast.data.store import file_sha256, open_tensors, tensors_dataset, write_tensors

# zarr 3 warns about string coordinates and consolidated metadata (read back by zarr-python only)
pytestmark = pytest.mark.filterwarnings("ignore:.*(Zarr V3 specification|Consolidated metadata).*")

T, H, W = 5, 3, 4
VARIABLES = ["tp", "t2m"]


def _arrays(seed: int = 0) -> dict:
    """Distinct float64/int64 inputs (the store must cast them), NaN in Y outside the mask."""
    rng = np.random.default_rng(seed)
    mask = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0]], bool)
    Y = rng.random((T, H, W, 1))
    Y[:, ~mask] = np.nan
    return {
        "X": rng.normal(size=(T, H, W, len(VARIABLES))),
        "Y": Y,
        "mask": mask.astype(int),
        "basin_id": np.where(mask, 1 + (np.arange(W) >= 2), 0).astype(np.int64),
        "time": pd.date_range("2011-02-27", periods=T, freq="D"),
        "lat": np.array([10.0, 11.0, 12.0]),
        "lon": np.array([70.0, 71.0, 72.0, 73.0]),
        "attrs": {"variables": VARIABLES, "target": "swvl1", "units": {"tp": "mm/day", "t2m": "K"},
                  "input_hashes": {"era5/tp_2011.nc": "ab" * 32}, "basin_names": {"1": "west", "2": "east"}},
    }


def test_round_trip_keeps_values_nan_pattern_coords_and_attrs(tmp_path):
    a = _arrays()
    path = tmp_path / "tensors.zarr"
    write_tensors(path, tensors_dataset(**a))
    t = open_tensors(path)
    assert (t.X.dtype, t.Y.dtype, t.mask.dtype, t.basin_id.dtype) == (np.float32, np.float32, bool, np.int32)
    assert t.X.shape == (T, H, W, 2) and t.Y.shape == (T, H, W, 1)
    np.testing.assert_array_equal(t.X, a["X"].astype(np.float32))
    np.testing.assert_array_equal(t.Y, a["Y"].astype(np.float32))  # NaN where NaN, nowhere else
    np.testing.assert_array_equal(t.mask, a["mask"].astype(bool))
    np.testing.assert_array_equal(t.basin_id, a["basin_id"])
    assert list(t.time) == list(a["time"]) and list(t.lat) == list(a["lat"]) and list(t.lon) == list(a["lon"])
    assert t.attrs == a["attrs"] and t.variables == VARIABLES


def test_store_is_readable_with_plain_zarr(tmp_path):
    """Light clients read it without xarray: names and dims as the module docstring says."""
    path = tmp_path / "tensors.zarr"
    write_tensors(path, tensors_dataset(**_arrays()))
    g = zarr.open_group(str(path), mode="r")
    assert g["X"].shape == (T, H, W, 2) and g["Y"].shape == (T, H, W, 1)
    assert g["mask"].shape == (H, W) and g["basin_id"].dtype == np.int32
    assert [str(v) for v in g["variable"][:]] == VARIABLES and [str(c) for c in g["channel"][:]] == ["swvl1"]
    assert g.attrs["variables"] == VARIABLES


def test_lazy_open_reads_the_same_values(tmp_path):
    path = tmp_path / "tensors.zarr"
    write_tensors(path, tensors_dataset(**_arrays()))
    lazy, eager = open_tensors(path, load=False), open_tensors(path)
    assert not isinstance(lazy.X, np.ndarray) and not isinstance(lazy.Y, np.ndarray)
    np.testing.assert_array_equal(np.asarray(lazy.X[1:3]), eager.X[1:3])
    np.testing.assert_array_equal(np.asarray(lazy.Y), eager.Y)


def _failing_midway(a: dict):
    """The store's Dataset with X a lazy array whose second time block fails to read (a
    source file going away mid-write): zarr has written metadata and the first block by then."""
    import dask
    import dask.array as da

    ds = tensors_dataset(**a)
    x = ds["X"].values

    def block(k: int) -> np.ndarray:
        if k:
            raise OSError("source vanished")
        return x[:3]

    lazy = da.concatenate([da.from_delayed(dask.delayed(block)(0), (3, H, W, 2), np.float32),
                           da.from_delayed(dask.delayed(block)(1), (T - 3, H, W, 2), np.float32)])
    ds["X"] = (ds["X"].dims, lazy)
    return ds


def test_rewrite_replaces_the_store_and_a_failed_one_keeps_it(tmp_path):
    path = tmp_path / "tensors.zarr"
    write_tensors(path, tensors_dataset(**_arrays(seed=1)))
    second = _arrays(seed=2)
    write_tensors(path, tensors_dataset(**second))
    np.testing.assert_array_equal(open_tensors(path).X, second["X"].astype(np.float32))
    with pytest.raises(OSError, match="source vanished"):
        write_tensors(path, _failing_midway(_arrays(seed=3)))
    kept = open_tensors(path)
    np.testing.assert_array_equal(kept.X, second["X"].astype(np.float32))
    np.testing.assert_array_equal(kept.Y, second["Y"].astype(np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tensors.zarr"]  # no temporaries left


def test_channel_count_must_match_the_variables():
    a = _arrays()
    a["attrs"] = {**a["attrs"], "variables": ["tp", "t2m", "sp"]}
    with pytest.raises(ValueError, match="^X has 2 channels but attrs name 3 variables$"):
        tensors_dataset(**a)


@pytest.mark.parametrize("name, shape, dim", [("Y", (T + 1, H, W, 1), "time"), ("mask", (H + 1, W), "lat"),
                                              ("basin_id", (H, W - 1), "lon"), ("Y", (T, H, W, 2), "channel")])
def test_mismatched_shapes_are_refused_naming_the_dimension(name, shape, dim):
    a = _arrays()
    a[name] = np.zeros(shape)
    with pytest.raises(ValueError, match=f"dimension '{dim}'"):
        tensors_dataset(**a)


def test_missing_store_says_which_stage_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tensors\.zarr: tensor store not found \(run the 'stack' stage first\)"):
        open_tensors(tmp_path / "tensors.zarr")


def test_file_sha256_is_the_digest_of_the_bytes_whatever_the_chunk(tmp_path):
    path = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(10_000)
    path.write_bytes(data)
    assert file_sha256(path) == file_sha256(path, chunk=7) == hashlib.sha256(data).hexdigest()


def test_synthetic_store_honours_the_contract(synthetic_store, tiny_cfg):
    """What every model/serving test trains on: Y NaN exactly outside the mask, X finite."""
    t = open_tensors(synthetic_store)
    assert t.variables == tiny_cfg.variable_names and t.X.shape[-1] == len(tiny_cfg.variables)
    assert 0 < t.mask.sum() < t.mask.size
    np.testing.assert_array_equal(np.isnan(t.Y[..., 0]), np.broadcast_to(~t.mask, t.Y.shape[:3]))
    assert np.isfinite(t.X).all()
    np.testing.assert_array_equal(t.basin_id > 0, t.mask)
    assert t.time[0].date() == tiny_cfg.period.start and len(t.time) == tiny_cfg.period.n_days


@pytest.mark.parametrize("key", ["variables", "target"])
def test_attrs_must_name_the_inputs_and_the_target(key):
    a = _arrays()
    a["attrs"] = {k: v for k, v in a["attrs"].items() if k != key}
    with pytest.raises(ValueError, match=rf"attrs lack \['{key}'\]"):
        tensors_dataset(**a)


@pytest.mark.parametrize("days, says", [
    (["2011-02-27", "2011-02-28", "2011-02-28", "2011-03-01", "2011-03-02"], "days stored more than once: 2011-02-28"),
    (["2011-02-27", "2011-02-28", "2011-03-02", "2011-03-03", "2011-03-04"], "the days are not consecutive after 2011-02-28"),
])
def test_a_broken_time_axis_is_named_on_open(tmp_path, days, says):
    """Issue 22.7: two ingests at once once left duplicated days, and every reader then
    crashed with a raw traceback; the store now refuses to open, naming the days."""
    a = _arrays()
    a["time"] = pd.DatetimeIndex(days)
    path = tmp_path / "tensors.zarr"
    tensors_dataset(**a).to_zarr(path, mode="w", consolidated=True)
    with pytest.raises(ValueError, match=f"{path}: the time axis is broken, {says}.*dvc checkout"):
        open_tensors(path, load=False)


def test_a_store_left_as_old_by_a_killed_write_is_not_sent_to_stack(tmp_path):
    """Issue 22.7: a kill between the two renames left only ``.tensors.zarr.old``; the old
    message said 'run the stack stage first', which drops every ingested day."""
    path = tmp_path / "tensors.zarr"
    write_tensors(path, tensors_dataset(**_arrays()))
    path.rename(tmp_path / ".tensors.zarr.old")
    with pytest.raises(FileNotFoundError, match=r"\.tensors\.zarr\.old is there.*run `soilcast ingest` again.*NOT"):
        open_tensors(path)
