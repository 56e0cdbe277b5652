"""Verification as the truth arrives: exact scores, each forecast lead once, revisions named,
a killed run leaves the table as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from soilcast.data.store import open_tensors
from soilcast.layout import Layout
from soilcast.operations import verify as verification
from soilcast.operations.record import archive_forecast
from soilcast.operations.table import read_table, summary
from soilcast.operations.verify import verify
from soilcast.testing.operations import issued

pytestmark = pytest.mark.filterwarnings("ignore:.*(Zarr V3 specification|Consolidated metadata).*")


def _issued(t, init: str, kind: str, label: str = "stable", version: int = 1):
    fields = {"truth": lambda valid, i0: t.Y[valid, ..., 0], "persistence": lambda valid, i0: t.Y[i0, ..., 0],
              "wet": lambda valid, i0: t.Y[valid, ..., 0] + 0.01}
    return issued(t, init, fields[kind], label=label, version=version)


def _archive(cfg, t, init: str, kind: str, label: str = "stable", version: int = 1) -> None:
    archive_forecast(cfg, Layout.from_config(cfg), _issued(t, init, kind, label, version), t, "s")


def _cut_store(path, last: str) -> None:
    """The store as it was before the days after ``last`` were ingested."""
    ds = xr.open_zarr(path).sel(time=slice(None, last)).load()
    for v in ds.variables.values():
        v.encoding = {}
    import shutil

    shutil.rmtree(path)
    ds.to_zarr(path, mode="w", consolidated=True)


def test_scores_are_exact_and_every_lead_is_scored_once(tiny_cfg, synthetic_store):
    t = open_tensors(synthetic_store)
    lay = Layout.from_config(tiny_cfg)
    _archive(tiny_cfg, t, "2013-12-20", "truth", "stable", 1)
    _archive(tiny_cfg, t, "2013-12-20", "persistence", "canary", 2)
    _archive(tiny_cfg, t, "2013-12-29", "truth", "stable", 1)  # leads 1, 2 observed; lead 3 (2014-01-01) not
    first = verify(tiny_cfg, lay)
    assert first.n_scored == 3 + 3 + 2 and first.last_observed == "2013-12-31"
    again = verify(tiny_cfg, lay)
    assert again.n_scored == 0 and len(again.table) == len(first.table)
    table = read_table(lay.operations.verification)
    assert not table.duplicated(["forecast", "lead", "basin"]).any()
    whole = table[table["basin"] == "all"]
    truth, persistence = whole[whole["label"] == "stable"], whole[whole["label"] == "canary"]
    assert (truth["rmse"] == 0).all() and np.allclose(truth["skill_persistence"], 1.0)
    assert np.allclose(persistence["skill_persistence"], 0.0)
    # basins partition the mask: their weights add up to the whole mask's
    per_basin = table[table["basin"] != "all"].groupby(["forecast", "lead"])["weight"].sum()
    assert np.allclose(per_basin.values, whole.set_index(["forecast", "lead"])["weight"].loc[per_basin.index].values)
    lead1 = summary(table).set_index(["label", "lead"])
    assert lead1.loc[("stable", 1), "n"] == 2 and lead1.loc[("stable", 3), "n"] == 1


def test_the_lead_of_a_day_observed_later_is_scored_when_it_arrives(tiny_cfg, synthetic_store):
    """Ingest appends a day: the next verify scores exactly the leads that became observable."""
    forecast = _issued(open_tensors(synthetic_store), "2013-12-28", "wet")  # issued with the days it knew
    _cut_store(synthetic_store, "2013-12-30")
    cut = open_tensors(synthetic_store)
    assert cut.time[-1] == pd.Timestamp("2013-12-30")
    lay = Layout.from_config(tiny_cfg)
    archive_forecast(tiny_cfg, lay, forecast, cut, "s")
    assert verify(tiny_cfg, lay).n_scored == 2  # valid 29th and 30th
    from soilcast.testing.synthetic import write_synthetic_store

    write_synthetic_store(tiny_cfg)  # the whole store again: 2013-12-31 observed now
    later = verify(tiny_cfg, lay)
    assert later.n_scored == 1 and list(later.scored["lead"].unique()) == [3]
    rmse = later.table[later.table["basin"] == "all"]["rmse"]
    assert np.allclose(rmse, 0.01, atol=1e-6)


def test_a_revised_observation_is_named_and_never_rescored(tiny_cfg, synthetic_store):
    t = open_tensors(synthetic_store)
    lay = Layout.from_config(tiny_cfg)
    _archive(tiny_cfg, t, "2013-12-20", "truth")
    before = verify(tiny_cfg, lay).table
    ds = xr.open_zarr(synthetic_store).load()
    ds["Y"].loc[{"time": "2013-12-22"}] = ds["Y"].sel(time="2013-12-22") + 0.05  # the store rebuilt, revised
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(synthetic_store, mode="w", consolidated=True)
    after = verify(tiny_cfg, lay)
    assert after.revised == ["2013-12-22"] and after.n_scored == 0
    pd.testing.assert_frame_equal(read_table(lay.operations.verification), before.reset_index(drop=True),
                                  check_dtype=False)


def test_a_killed_verify_leaves_the_table_and_the_next_scores_each_lead_once(tiny_cfg, synthetic_store, monkeypatch):
    t = open_tensors(synthetic_store)
    lay = Layout.from_config(tiny_cfg)
    _archive(tiny_cfg, t, "2013-12-20", "truth")
    _archive(tiny_cfg, t, "2013-12-21", "wet")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the table")

    monkeypatch.setattr(verification, "write_table", killed)  # fault injection at the one write
    with pytest.raises(KeyboardInterrupt):
        verify(tiny_cfg, lay)
    assert not lay.operations.verification.exists()
    monkeypatch.undo()
    done = verify(tiny_cfg, lay)
    assert done.n_scored == 6 and not done.table.duplicated(["forecast", "lead", "basin"]).any()
