"""The forecast archive: every issued forecast once, with provenance; a killed append cut back."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from soilcast.data.store import open_tensors
from soilcast.layout import Layout
from soilcast.operations.archive import (
    ArchiveError,
    append,
    archive_entry,
    committed_count,
    open_archive,
)
from soilcast.operations.record import archive_forecast
from soilcast.testing.operations import issued

pytestmark = pytest.mark.filterwarnings("ignore:.*(Zarr V3 specification|Consolidated metadata).*")


def observed(t):
    return lambda valid, init: t.Y[valid, ..., 0]


def test_every_forecast_is_archived_once_with_its_provenance(tiny_cfg, synthetic_store):
    t = open_tensors(synthetic_store)
    lay = Layout.from_config(tiny_cfg)
    stable = issued(t, "2013-06-01", observed(t), label="stable", version=1)
    canary = issued(t, "2013-06-01", observed(t), label="canary", version=2)
    done = [archive_forecast(tiny_cfg, lay, f, t, "127.0.0.1:1") for f in (stable, canary, stable)]
    assert [(d.index, d.new) for d in done] == [(0, True), (1, True), (0, False)]
    ds = open_archive(lay.operations.archive)
    assert ds.sizes["forecast"] == 2 and list(ds["label"].values) == ["stable", "canary"]
    assert list(ds["version"].values) == [1, 2] and str(ds["init_time"].values[0])[:10] == "2013-06-01"
    k = list(ds["lead_time"].values).index(2)
    np.testing.assert_array_equal(ds["soil_moisture"].values[0, k][t.mask], t.Y[t.time.get_loc("2013-06-03"), ..., 0][t.mask])
    assert np.isnan(ds["soil_moisture"].values[0, k][~t.mask]).all()
    # leads the served version does not forecast stay NaN on the archive's lead axis
    assert np.isnan(ds["soil_moisture"].values[0, list(ds["lead_time"].values).index(7)]).all()
    assert ds["window_sha256"].values[0] == "w" and ds["server"].values[0] == "127.0.0.1:1"
    status = lay.operations.status.read_text()
    assert '"latest_init": "2013-06-01"' in status


def test_a_killed_append_is_cut_back_by_the_next(tiny_cfg, synthetic_store):
    """A kill after some arrays grew but before the commit count: readers see only the
    committed entries, and the next append overwrites the half-written one."""
    t = open_tensors(synthetic_store)
    path = Layout.from_config(tiny_cfg).operations.archive
    first = archive_entry(tiny_cfg, issued(t, "2013-06-01", observed(t)), t, "s")
    append(path, first)
    half = archive_entry(tiny_cfg, issued(t, "2013-06-02", observed(t)), t, "s")
    half[["soil_moisture", "init_time"]].to_zarr(path, append_dim="forecast", consolidated=True)  # then killed
    assert committed_count(path) == 1 and open_archive(path).sizes["forecast"] == 1
    done = append(path, archive_entry(tiny_cfg, issued(t, "2013-06-03", observed(t)), t, "s"))
    assert (done.index, done.new, done.repaired) == (1, True, 1)
    ds = xr.open_zarr(path)
    assert ds.sizes["forecast"] == 2 and [str(v)[:10] for v in ds["init_time"].values] == ["2013-06-01", "2013-06-03"]


def test_a_forecast_on_other_axes_is_refused_naming_the_axis(tiny_cfg, synthetic_store):
    t = open_tensors(synthetic_store)
    path = Layout.from_config(tiny_cfg).operations.archive
    append(path, archive_entry(tiny_cfg, issued(t, "2013-06-01", observed(t)), t, "s"))
    other = archive_entry(tiny_cfg, issued(t, "2013-06-02", observed(t)), t, "s").isel(lat=slice(1, None))
    with pytest.raises(ArchiveError, match="archive's lat axis is"):
        append(path, other)
    with pytest.raises(ArchiveError, match=r"forecasts leads \[1, 9\]"):
        archive_entry(tiny_cfg, issued(t, "2013-06-02", observed(t), leads=[1, 9]), t, "s")


def test_a_second_writer_is_refused_while_one_archives(tiny_cfg, synthetic_store):
    """The cron run and a hand run: the archive takes one writer at a time, the other is told."""
    from soilcast.io.lock import LockBusy
    from soilcast.testing.locks import held_elsewhere

    t = open_tensors(synthetic_store)
    lay = Layout.from_config(tiny_cfg)
    with held_elsewhere(lay.operations.root, "forecast archive update"):
        with pytest.raises(LockBusy, match="another forecast archive update of .* is running"):
            archive_forecast(tiny_cfg, lay, issued(t, "2013-06-01", observed(t)), t, "s")
    assert open_archive(lay.operations.archive) is None
