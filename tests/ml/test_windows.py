"""Window arithmetic, split boundaries and the deterministic streaming pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from soilcast.ml.windows import (
    Prepared,
    WindowDataset,
    check_daily,
    evenly_spaced,
    patch_offsets,
    split_ends,
    target_of_day,
    window_ends,
)

TIME = pd.date_range("2010-01-01", "2013-12-31", freq="D")


def ramp(cfg, H=6, W=5, mask=None) -> Prepared:
    """X[t] = t and Y[t] = 1000 + t everywhere: window contents reveal their day index."""
    T = len(TIME)
    t = np.arange(T, dtype=np.float32)[:, None, None, None]
    Xs = np.broadcast_to(t, (T, H, W, len(cfg.variables))).copy()
    Ys = np.broadcast_to(1000 + t, (T, H, W, 1)).copy()
    m = np.ones((H, W), bool) if mask is None else mask
    targets = target_of_day(Ys, None, m, None, "state", cfg.window.leads)
    return Prepared(Xs=Xs, Ys=Ys, targets=targets, weight=m.astype(np.float32), time=TIME)


def test_target_is_input_shifted_by_each_lead(tiny_cfg):
    L, leads = tiny_cfg.window.seq_len, tiny_cfg.window.leads
    K = len(leads)
    assert K > 1  # the params' lead axis: every lead is checked below
    data = ramp(tiny_cfg)
    assert data.targets.shape == data.Ys.shape[:3] + (K,)
    ends = split_ends(tiny_cfg, TIME, "val")
    ds = WindowDataset(data, ends[:8], tiny_cfg, train=False)
    x, y = ds[0]
    assert x.shape == (tiny_cfg.training.batch_size, L, 6, 5, len(tiny_cfg.variables))
    assert y.shape == x.shape[:4] + (K + 1,)  # one target per lead, then the mask weight
    for k, t in enumerate(ends[: tiny_cfg.training.batch_size]):
        np.testing.assert_array_equal(x[k, :, 0, 0, 0], np.arange(t - L + 1, t + 1))
        for i, lead in enumerate(leads):
            np.testing.assert_array_equal(y[k, :, 0, 0, i] - 1000, x[k, :, 0, 0, 0] + lead)
            assert y[k, -1, 0, 0, i] - 1000 == t + lead  # the forecast step of lead i
    assert np.all(y[..., K] == 1)


def test_increment_target_is_the_change_over_each_lead(tiny_cfg):
    """window.target: increment -> step s's target at lead k is (Y[s+k] - Y[s]) / scale_k (the
    change from the LAST OBSERVED day s, each lead divided by its own scale), 0 outside the
    mask and where s + k lies beyond the series."""
    from types import SimpleNamespace

    leads, scales, T = (2, 5), (0.5, 0.25), 50
    y = (np.arange(T, dtype=np.float32) ** 2 / 1000)[:, None, None, None] * np.ones((1, 3, 2, 1), np.float32)
    mask = np.array([[True, False], [True, True], [False, True]])
    scaler = SimpleNamespace(increment_scale=scales)
    out = target_of_day(np.zeros_like(y), y, mask, scaler, "increment", leads)
    assert out.shape == (T, 3, 2, len(leads))
    for i, (lead, scale) in enumerate(zip(leads, scales)):
        s = np.arange(T - lead)
        np.testing.assert_allclose(out[: T - lead, 0, 0, i], ((s + lead) ** 2 - s**2) / 1000 / scale, rtol=1e-5)
        assert np.all(out[T - lead :, ..., i] == 0)
    assert np.all(out[:, ~mask] == 0)


def test_a_lead_beyond_the_series_has_no_target():
    y = np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 1, 1), np.float32)
    out = target_of_day(y, y, np.ones((1, 1), bool), None, "state", (1, 9))
    np.testing.assert_array_equal(out[:, 0, 0, 0], [1, 2, 3, 0])
    np.testing.assert_array_equal(out[:, 0, 0, 1], [0, 0, 0, 0])


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_no_window_straddles_a_split(tiny_cfg, split):
    """Not even at the longest lead: every lead is scored on the same windows."""
    L, lead = tiny_cfg.window.seq_len, tiny_cfg.window.max_lead
    assert lead == max(tiny_cfg.window.leads) > 1
    y0, y1 = getattr(tiny_cfg.split, f"{split}_years")
    ends = split_ends(tiny_cfg, TIME, split)
    first, last = TIME[ends - L + 1], TIME[ends + lead]
    assert (first.year >= y0).all() and (last.year <= y1).all()
    # and it is maximal: one more window on either side would straddle
    before, after = ends[0] - L, ends[-1] + lead + 1
    assert before < 0 or TIME[before].year < y0
    assert after >= len(TIME) or TIME[after].year > y1


def test_splits_are_disjoint_and_chronological(tiny_cfg):
    days = {s: set() for s in ("train", "val", "test")}
    L, lead = tiny_cfg.window.seq_len, tiny_cfg.window.max_lead
    for s in days:
        for t in split_ends(tiny_cfg, TIME, s):
            days[s].update(range(t - L + 1, t + lead + 1))
    assert not (days["train"] & days["val"]) and not (days["val"] & days["test"])
    assert max(days["train"]) < min(days["val"]) <= max(days["val"]) < min(days["test"])


def test_window_ends_small_example():
    time = pd.date_range("2000-12-25", "2001-01-10", freq="D")
    ends = window_ends(time, (2001, 2001), seq_len=3, max_lead=2)
    # 2001 starts at index 7: first window uses days 7..9, forecast day 11; last index 16
    assert ends[0] == 9 and ends[-1] == 14
    # the longest lead decides: lead 5 of the window ending at 11 is day 16, the last of 2001
    np.testing.assert_array_equal(window_ends(time, (2001, 2001), seq_len=3, max_lead=5), [9, 10, 11])


def test_training_order_is_a_function_of_seed_and_epoch(tiny_cfg):
    data = ramp(tiny_cfg, H=8, W=8)
    ends = split_ends(tiny_cfg, TIME, "train")
    steps = 5
    a = WindowDataset(data, ends, tiny_cfg, train=True, steps=steps, patch=4)
    b = WindowDataset(data, ends, tiny_cfg, train=True, steps=steps, patch=4, start_epoch=1)
    assert a.num_batches is None  # an endless stream; epochs are cut by steps_per_epoch
    for i in range(steps):  # epoch 1 seen from a fresh start == after a resume at epoch 1
        xa, ya = a[steps + i]
        xb, yb = b[i]
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], a[steps][0])  # epochs differ
    assert a.data.Xs is data.Xs  # windows are cut from the arrays, never copied xL


def test_patches_hold_mask_cells_and_weights(tiny_cfg):
    mask = np.zeros((10, 10), bool)
    mask[6:, 6:] = True
    data = ramp(tiny_cfg, H=10, W=10, mask=mask)
    (ph, pw), offs = patch_offsets(mask, 4)
    assert (ph, pw) == (4, 4) and all(mask[i : i + 4, j : j + 4].any() for i, j in offs)
    ds = WindowDataset(data, split_ends(tiny_cfg, TIME, "train"), tiny_cfg, train=True, steps=3, patch=4)
    for i in range(3):
        x, y = ds[i]
        assert x.shape[2:4] == (4, 4)
        assert y.shape[-1] == len(tiny_cfg.window.leads) + 1
        assert (y[..., -1].sum(axis=(1, 2, 3)) > 0).all()
    full = WindowDataset(data, split_ends(tiny_cfg, TIME, "train"), tiny_cfg, train=True, steps=1, patch=0)
    assert full[0][0].shape[2:4] == (10, 10)


def test_evenly_spaced_and_daily_check():
    ends = np.arange(100)
    sel = evenly_spaced(ends, 10)
    assert len(sel) == 10 and sel[0] == 0 and sel[-1] == 99
    with pytest.raises(ValueError, match="consecutive days"):
        check_daily(pd.DatetimeIndex(["2010-01-01", "2010-01-02", "2010-01-04"]))
