"""Basin mask: exact cells under each rule, reprojection, and every bad basins file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from soilcast.data.clip import apply_mask, build_mask, load_mask, mask_path, rasterize
from soilcast.data.readers import DataError
from soilcast.testing.rawdata import small_config, write_basins

LAT = np.arange(10.5, 15.6, 1.0)  # cell edges at integers
LON = np.arange(70.5, 75.6, 1.0)


def _square(x0, y0, x1, y1):
    import shapely

    return shapely.box(x0, y0, x1, y1)


def _cells(index):
    return {(float(LAT[i]), float(LON[j])) for i, j in zip(*np.nonzero(index))}


def test_centre_rule_square_on_cell_edges():
    idx = rasterize([_square(71, 11, 74, 13)], "centre", 0.5, LAT, LON)
    assert _cells(idx) == {(y, x) for y in (11.5, 12.5) for x in (71.5, 72.5, 73.5)}


@pytest.mark.parametrize("rule,min_fraction,expected", [
    ("centre", 0.5, 4),      # centres 71.5, 72.5 x 11.5, 12.5
    ("fraction", 0.5, 4),    # inner cells fully covered; edges 0.25, corners 0.0625
    ("fraction", 0.2, 12),   # + edge cells, not corners
    ("fraction", 0.05, 16),  # + corners
])
def test_fraction_rule_counts_exactly(rule, min_fraction, expected):
    idx = rasterize([_square(70.75, 10.75, 73.25, 13.25)], rule, min_fraction, LAT, LON)
    assert int((idx > 0).sum()) == expected
    inner = {(y, x) for y in (11.5, 12.5) for x in (71.5, 72.5)}
    assert inner <= _cells(idx)


def test_fraction_rule_adjacent_basins_share_cells_by_largest_part():
    # two basins split the cells of row 11 at lon 72.3: each cell goes to the larger share
    idx = rasterize([_square(70, 11, 72.3, 12), _square(72.3, 11, 76, 12)], "fraction", 0.5, LAT, LON)
    row = idx[list(LAT).index(11.5)]
    assert row.tolist() == [1, 1, 2, 2, 2, 2]


@pytest.fixture
def cfg(tmp_path):
    return small_config(tmp_path)


def test_build_mask_writes_ids_and_names(cfg):
    write_basins(Path(cfg.basins.path), [(7, "north", (71, 13, 74, 16)), (3, "south", (71, 10, 74, 13))])
    out = build_mask(cfg)
    assert out == mask_path(cfg)
    mask, bid, names, hashes = load_mask(cfg)
    assert names == {3: "south", 7: "north"} and bid.dtype == np.int32
    assert set(np.unique(bid)) == {0, 3, 7} and np.array_equal(mask, bid > 0)
    assert bid[list(LAT).index(14.5), list(LON).index(72.5)] == 7
    assert bid[list(LAT).index(11.5), list(LON).index(72.5)] == 3
    assert list(hashes) == ["basins/demo_regions.geojson"]
    with xr.open_dataset(out) as ds:
        assert ds.attrs["cell_rule"] == "centre" and json.loads(ds.attrs["basin_names"])["7"] == "north"


def test_reprojects_to_epsg4326(cfg, tmp_path):
    import geopandas as gpd

    gdf = gpd.GeoDataFrame({"region_id": [1], "name": ["a"]}, geometry=[_square(71, 11, 74, 13)], crs=4326)
    path = tmp_path / "basins_3857.gpkg"
    gdf.to_crs(3857).to_file(path)
    moved = small_config(tmp_path, {"basins": {"path": str(path)}})
    build_mask(moved)
    mask, *_ = load_mask(moved)
    assert _cells(mask) == {(y, x) for y in (11.5, 12.5) for x in (71.5, 72.5, 73.5)}


def _keeps_previous_mask(cfg, make_bad, match):
    write_basins(Path(cfg.basins.path), [(1, "a", (71, 11, 74, 13))])
    build_mask(cfg)
    before = mask_path(cfg).read_bytes()
    make_bad(Path(cfg.basins.path))
    with pytest.raises(DataError, match=match):
        build_mask(cfg)
    assert mask_path(cfg).read_bytes() == before


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_no_crs_rejected(cfg, tmp_path):
    import geopandas as gpd

    shp = tmp_path / "nocrs" / "basins.shp"
    shp.parent.mkdir()
    gpd.GeoDataFrame({"region_id": [1], "name": ["a"]}, geometry=[_square(71, 11, 74, 13)]).to_file(shp)
    assert not shp.with_suffix(".prj").exists()
    with pytest.raises(DataError, match="no CRS"):
        build_mask(small_config(tmp_path, {"basins": {"path": str(shp)}}))


def test_invalid_geometry_rejected(cfg):
    def bowtie(path):
        doc = json.loads(path.read_text())
        doc["features"][0]["geometry"]["coordinates"] = [[[71, 11], [74, 13], [74, 11], [71, 13], [71, 11]]]
        path.write_text(json.dumps(doc))

    _keeps_previous_mask(cfg, bowtie, "invalid geometry in basin.*Self-intersection")


def test_basins_not_overlapping_grid_rejected(cfg):
    _keeps_previous_mask(cfg, lambda p: write_basins(p, [(1, "far", (10, -40, 12, -38))]), "no basin covers")


def test_missing_id_field_rejected(cfg):
    def rename(path):
        path.write_text(path.read_text().replace("region_id", "rid"))

    _keeps_previous_mask(cfg, rename, "field 'region_id' missing")


def test_apply_mask_nan_outside():
    mask = np.array([[True, False], [False, True]])
    x = np.ones((3, 2, 2, 4))
    out = apply_mask(x, mask)
    assert out.dtype == np.float32
    assert np.isnan(out[:, ~mask]).all() and not np.isnan(out[:, mask]).any()
    assert np.isnan(apply_mask(np.ones((2, 2)), mask)[~mask]).all()


def test_apply_mask_in_place():
    mask = np.array([[True, False]])
    x = np.ones((2, 1, 2, 3), dtype=np.float32)
    assert apply_mask(x, mask, copy=False) is x and np.isnan(x[:, 0, 1]).all()
