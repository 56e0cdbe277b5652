"""The probabilistic forecast products: quantiles passed through and the basins' chance of
D1 or worse, in the graph and in its numpy twin; the D1 threshold evaluation shares."""

from __future__ import annotations

import numpy as np
import pytest

from soilcast.contract import (
    D1_OR_WORSE_PERCENTILE,
    DROUGHT_PROBABILITY,
    PROBABILISTIC_OUTPUTS,
    PRODUCT_OUTPUTS,
    QUANTILES,
)
from soilcast.export.products import (
    D1_INDEX,
    N_QUANTILE_BINS,
    QUANTILE_LEVELS,
    ProductTables,
    basin_membership,
    d1_threshold,
    products_layer,
    products_numpy,
    seasonal_quantiles,
)

LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
H, W = 4, 5


def _tables(seed: int = 0) -> tuple[ProductTables, np.ndarray]:
    """Random tables on a 4x5 grid with two basins (columns < 2: basin 1, else 2) and three
    cells outside the mask; percentile quantiles ordered along their 21 levels."""
    rng = np.random.default_rng(seed)
    mask = np.ones((H, W), bool)
    mask[0, 0] = mask[3, 4] = mask[1, 2] = False
    basin = np.where(mask, 1 + (np.arange(W)[None, :] >= 2), 0)
    lat = np.linspace(10.0, 40.0, H)
    ids, member = basin_membership(basin, mask, lat)
    quants = np.sort(rng.uniform(0.05, 0.45, (N_QUANTILE_BINS, QUANTILE_LEVELS.size, H, W)), axis=1)
    quants = np.where(mask, quants, np.nan).astype(np.float32)
    clim = np.where(mask, rng.uniform(0.1, 0.4, (366, H, W)), np.nan).astype(np.float32)
    return ProductTables(ids, member, clim, quants), mask


def _run(layer, y: np.ndarray, doy: np.ndarray, q: np.ndarray | None = None) -> dict[str, np.ndarray]:
    import keras

    args = (y, doy) if q is None else (y, doy, q)
    return {k: keras.ops.convert_to_numpy(v) for k, v in layer(*args).items()}


def _random_forecast(mask: np.ndarray, b: int, k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y [b, K, H, W], doy [b, K] int32, ordered q [b, K, Q, H, W]), NaN outside the mask."""
    rng = np.random.default_rng(seed)
    q = np.sort(rng.uniform(0.0, 0.5, (b, k, len(LEVELS), H, W)), axis=2)
    q = np.where(mask, q, np.nan).astype(np.float32)
    y = q[:, :, LEVELS.index(0.5)]
    doy = rng.integers(0, 366, (b, k)).astype(np.int32)
    return y, doy, q


def test_graph_and_numpy_twin_agree_on_random_ordered_quantiles():
    tables, mask = _tables()
    y, doy, q = _random_forecast(mask, b=3, k=4)
    layer = products_layer(tables, LEVELS)
    got = _run(layer, y, doy, q)
    want = products_numpy(y, doy, tables, q, LEVELS)
    assert set(got) == set(want) == {*PRODUCT_OUTPUTS, *PROBABILISTIC_OUTPUTS}
    assert got[DROUGHT_PROBABILITY].shape == (3, 4, len(tables.basin_ids))
    np.testing.assert_allclose(got[DROUGHT_PROBABILITY], want[DROUGHT_PROBABILITY], atol=1e-5)
    assert 0 < np.nanmin(got[DROUGHT_PROBABILITY]) and np.nanmax(got[DROUGHT_PROBABILITY]) < 1
    np.testing.assert_array_equal(got[QUANTILES], q)  # as received, NaN outside the mask
    np.testing.assert_allclose(got["percentile"], want["percentile"], atol=1e-3)
    for name in ("basin_mean", "anomaly"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)
    # the point products are unchanged by passing quantiles, and without them nothing new appears
    point = _run(products_layer(tables), y, doy)
    assert set(point) == set(PRODUCT_OUTPUTS)
    for name in PRODUCT_OUTPUTS:
        np.testing.assert_array_equal(got[name], point[name], err_msg=name)
    assert set(products_numpy(y, doy, tables)) == set(PRODUCT_OUTPUTS)
    # one lead at a time in numpy gives the same as the lead axis
    one = products_numpy(y[:, 2], doy[:, 2], tables, q[:, 2], LEVELS)
    np.testing.assert_allclose(one[DROUGHT_PROBABILITY], want[DROUGHT_PROBABILITY][:, 2], rtol=1e-12)


def test_graph_takes_an_unknown_batch_inside_a_traced_function():
    import tensorflow as tf

    tables, mask = _tables()
    y, doy, q = _random_forecast(mask, b=2, k=3)
    layer = products_layer(tables, LEVELS)
    fn = tf.function(lambda a, d, b: layer(a, d, b), input_signature=[
        tf.TensorSpec((None, 3, H, W), tf.float32), tf.TensorSpec((None, 3), tf.int32),
        tf.TensorSpec((None, 3, len(LEVELS), H, W), tf.float32)])
    got = {k: v.numpy() for k, v in fn(y, doy, q).items()}
    np.testing.assert_allclose(got[DROUGHT_PROBABILITY], products_numpy(y, doy, tables, q, LEVELS)[DROUGHT_PROBABILITY],
                               atol=1e-5)


def _uniform_tables(lat: np.ndarray, basin: np.ndarray, mask: np.ndarray) -> ProductTables:
    """Every cell's training distribution uniform on 0..1: the 20 % quantile is 0.2."""
    ids, member = basin_membership(basin, mask, lat)
    levels = np.linspace(0.0, 1.0, 21, dtype=np.float32)
    h, w = mask.shape
    quants = np.where(mask, np.broadcast_to(levels[None, :, None, None], (N_QUANTILE_BINS, 21, h, w)), np.nan)
    return ProductTables(ids, member, np.full((366, h, w), 0.3, np.float32), quants.astype(np.float32))


def _fan(*centres: float, half: float = 0.03) -> np.ndarray:
    """[1, 1, Q, 1, n] fans of width 2 * half around each centre, one per cell."""
    offsets = np.linspace(-half, half, len(LEVELS))
    return (np.asarray(centres)[None, :] + offsets[:, None])[None, None, :, None, :].astype(np.float32)


def test_a_fan_below_the_threshold_is_certain_drought_and_above_it_none():
    mask = np.ones((1, 3), bool)
    tables = _uniform_tables(np.array([20.0]), np.array([[1, 2, 3]]), mask)
    assert d1_threshold(tables, np.array([0, 200, 365])).shape == (3, 1, 3)
    np.testing.assert_allclose(d1_threshold(tables, np.array([100])), 0.2)
    q = _fan(0.1, 0.5, 0.2)  # wholly below 0.2 (tails included), wholly above, centred on it
    doy = np.array([[150]], np.int32)
    layer = products_layer(tables, LEVELS)
    for out in (_run(layer, q[:, :, 3], doy, q), products_numpy(q[:, :, 3], doy, tables, q, LEVELS)):
        np.testing.assert_allclose(out[DROUGHT_PROBABILITY][0, 0], [1.0, 0.0, 0.5], atol=1e-6)


def test_drought_probability_is_the_area_weighted_share_of_the_basin():
    """Basin 1: a cell at 0 N certainly dry, one at 60 N certainly not -> cos(0) / (cos 0 +
    cos 60) = 2/3; a cell with no forecast (NaN) does not count; basin 2 has no forecast: NaN."""
    lat = np.array([0.0, 60.0])
    basin = np.array([[1, 1, 2], [1, 1, 2]])
    mask = np.ones((2, 3), bool)
    tables = _uniform_tables(lat, basin, mask)
    q = np.full((1, 1, len(LEVELS), 2, 3), np.nan, np.float32)
    q[0, 0, :, 0, 0] = _fan(0.1)[0, 0, :, 0, 0]  # 0 N: dry
    q[0, 0, :, 1, 0] = _fan(0.6)[0, 0, :, 0, 0]  # 60 N: wet
    q[0, 0, :, 0, 1] = _fan(0.1)[0, 0, :, 0, 0]
    q[0, 0, 3, 0, 1] = np.nan  # incomplete fan at 0 N: left out
    doy = np.array([[10]], np.int32)
    want = [1.0 / (1.0 + np.cos(np.deg2rad(60.0))), np.nan]
    np.testing.assert_allclose(want[0], 2 / 3)
    for out in (_run(products_layer(tables, LEVELS), q[:, :, 3], doy, q),
                products_numpy(q[:, :, 3], doy, tables, q, LEVELS)):
        np.testing.assert_allclose(out[DROUGHT_PROBABILITY][0, 0], want, atol=1e-6)


def test_a_point_forecast_level_is_a_step():
    mask = np.ones((1, 2), bool)
    tables = _uniform_tables(np.array([0.0]), np.array([[1, 2]]), mask)
    q = np.array([0.15, 0.25], np.float32).reshape(1, 1, 1, 1, 2)
    doy = np.array([[40]], np.int32)
    for out in (_run(products_layer(tables, (0.5,)), q[:, :, 0], doy, q),
                products_numpy(q[:, :, 0], doy, tables, q, (0.5,))):
        np.testing.assert_allclose(out[DROUGHT_PROBABILITY][0, 0], [1.0, 0.0])


def test_quantiles_need_their_levels():
    tables, mask = _tables()
    y, doy, q = _random_forecast(mask, b=1, k=2)
    with pytest.raises(ValueError, match="without levels"):
        _run(products_layer(tables), y, doy, q)
    with pytest.raises(ValueError, match="quantile fields"):
        _run(products_layer(tables, (0.25, 0.5, 0.75)), y, doy, q)
    with pytest.raises(ValueError, match="levels"):
        products_numpy(y, doy, tables, q)
    with pytest.raises(ValueError):
        products_layer(tables, (0.1, 0.9))  # no median


def test_d1_threshold_is_the_20th_percentile_row_of_the_valid_days_bin():
    tables, _ = _tables()
    assert QUANTILE_LEVELS[D1_INDEX] == D1_OR_WORSE_PERCENTILE
    doy = np.array([[0, 4, 5], [359, 360, 365]])
    t = d1_threshold(tables, doy)
    assert t.shape == (2, 3, H, W)
    bins = [[0, 0, 1], [71, 72, 72]]
    for i in range(2):
        for j in range(3):
            np.testing.assert_array_equal(t[i, j], tables.quantiles[bins[i][j], D1_INDEX])


def test_seasonal_quantiles_take_any_levels_and_keep_the_default_table():
    import pandas as pd

    rng = np.random.default_rng(4)
    time = pd.date_range("2010-01-01", "2011-12-31", freq="D")
    mask = np.array([[True, True, False]])
    Y = np.where(mask, rng.random((len(time), 1, 3)), np.nan).astype(np.float32)
    Y[5, 0, 1] = np.nan  # a gap inside the mask
    default = seasonal_quantiles(Y, time, mask, 31)
    assert default.shape == (N_QUANTILE_BINS, 21, 1, 3)
    np.testing.assert_array_equal(default, seasonal_quantiles(Y, time, mask, 31, QUANTILE_LEVELS / 100.0))
    some = seasonal_quantiles(Y, time, mask, 31, LEVELS)
    assert some.shape == (N_QUANTILE_BINS, len(LEVELS), 1, 3)
    np.testing.assert_array_equal(some[:, LEVELS.index(0.5)], default[:, 10])  # the 50 % row
    assert np.isnan(some[..., 0, 2]).all() and (np.diff(some[..., 0, :2], axis=1) >= 0).all()
