"""Rasterise the basin polygons onto the target grid once: a mask and a basin-id raster.

Cell rules: ``centre`` puts a cell in a basin when its centre lies inside the polygon
(strictly: a centre exactly on an edge is outside); ``fraction`` when the union of basins
covers at least ``basins.min_fraction`` of the cell (planar area in degrees, computed exactly
with shapely), the cell then taking the basin that covers most of it.

Invalid geometries are rejected with an error naming the feature and shapely's reason,
rather than repaired: ``make_valid`` can silently change a basin's area, and a basin file is
a curated input that should be fixed at its source.

Output (the mask file, ``Layout.mask_file`` under DVC): ``mask`` (int8 0/1, lat x lon), ``basin_id`` (int32,
0 outside), coords ``lat``/``lon``; attrs ``basin_names`` (JSON id -> name), ``cell_rule``,
``min_fraction``, ``input_hashes`` (JSON, the basins file's sha256).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from soilcast.config import Config
from soilcast.data.readers import DataError, cell_edges, hash_key, target_axes
from soilcast.data.store import file_sha256
from soilcast.io.atomic import atomic_path, remove_stale_temporaries


def read_basins(cfg: Config, basins_path: Path):
    """Read and check the basins file; return a GeoDataFrame in EPSG:4326 sorted by id."""
    import geopandas as gpd
    import shapely

    path = Path(basins_path)
    if not path.is_file():
        raise DataError(f"{path}: basins file not found")
    try:
        gdf = gpd.read_file(path)
    except Exception as err:
        raise DataError(f"{path}: cannot read basins ({type(err).__name__}: {err})") from None
    if gdf.crs is None:
        raise DataError(f"{path}: basins file has no CRS; expected one (e.g. EPSG:4326)")
    for field in (cfg.basins.id_field, cfg.basins.name_field):
        if field not in gdf.columns:
            raise DataError(f"{path}: field {field!r} missing (has {sorted(map(str, gdf.columns))})")
    if gdf.empty:
        raise DataError(f"{path}: no features")
    ids = gdf[cfg.basins.id_field]
    if not np.issubdtype(ids.dtype, np.integer) or (ids <= 0).any() or ids.duplicated().any():
        raise DataError(f"{path}: {cfg.basins.id_field} must be unique positive integers (got {ids.tolist()})")
    bad = ~gdf.geometry.is_valid | gdf.geometry.is_empty
    if bad.any():
        reasons = [f"{i}: {shapely.is_valid_reason(g)}" for i, g in zip(ids[bad], gdf.geometry[bad])]
        raise DataError(f"{path}: invalid geometry in basin(s) {reasons}")
    return gdf.to_crs(4326).sort_values(cfg.basins.id_field).reset_index(drop=True)


def _cells(lat: np.ndarray, lon: np.ndarray):
    import shapely

    ye, xe = cell_edges(lat), cell_edges(lon)
    y0, x0 = np.meshgrid(ye[:-1], xe[:-1], indexing="ij")
    y1, x1 = np.meshgrid(ye[1:], xe[1:], indexing="ij")
    return shapely.box(x0, y0, x1, y1)


def rasterize(geoms, rule: str, min_fraction: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Index (1-based, into ``geoms``) of the basin each cell belongs to; 0 outside."""
    import shapely

    geoms = list(geoms)
    index = np.zeros((lat.size, lon.size), dtype=np.int32)
    if rule == "centre":
        yy, xx = np.meshgrid(lat, lon, indexing="ij")
        for k in range(len(geoms), 0, -1):  # first basin wins where polygons overlap
            index[shapely.contains_xy(geoms[k - 1], xx, yy)] = k
        return index
    cells = _cells(lat, lon)
    cell_area = shapely.area(cells)
    union = shapely.union_all(geoms)
    covered = shapely.area(shapely.intersection(cells, union)) / cell_area
    shares = np.stack([shapely.area(shapely.intersection(cells, g)) for g in geoms])
    inside = covered >= min_fraction - 1e-12
    index[inside] = shares.argmax(axis=0)[inside] + 1
    return index


def basin_raster(cfg: Config, basins_path: Path) -> tuple[np.ndarray, dict[int, str], object]:
    """(basin_id raster, {id: name}, the GeoDataFrame) for the configured grid and rule."""
    gdf = read_basins(cfg, basins_path)
    lat, lon = target_axes(cfg.grid)
    idx = rasterize(gdf.geometry, cfg.basins.cell_rule, cfg.basins.min_fraction, lat, lon)
    ids = np.concatenate([[0], gdf[cfg.basins.id_field].to_numpy(np.int32)])
    raster = ids[idx].astype(np.int32)
    if not (raster > 0).any():
        raise DataError(
            f"{basins_path}: no basin covers any target cell (grid lat {lat[0]}..{lat[-1]}, "
            f"lon {lon[0]}..{lon[-1]}, rule {cfg.basins.cell_rule})"
        )
    names = {int(i): str(n) for i, n in zip(gdf[cfg.basins.id_field], gdf[cfg.basins.name_field])}
    return raster, names, gdf


def build_mask(cfg: Config, basins_path: Path, out_file: Path, *, raw_dir: Path) -> Path:
    """Rasterise the basins file onto the target grid and write the mask ``out_file`` atomically.

    ``raw_dir`` is not read: it names the basins file in the provenance record (relative to
    the raw folder, as every raw input is named).
    """
    out = Path(out_file)
    remove_stale_temporaries(out)
    raster, names, _ = basin_raster(cfg, basins_path)
    lat, lon = target_axes(cfg.grid)
    present = {i: n for i, n in names.items() if (raster == i).any()}
    ds = xr.Dataset(
        {
            "mask": (("lat", "lon"), (raster > 0).astype(np.int8)),
            "basin_id": (("lat", "lon"), raster),
        },
        coords={"lat": lat, "lon": lon},
        attrs={
            "basin_names": json.dumps(present),
            "cell_rule": cfg.basins.cell_rule,
            "min_fraction": cfg.basins.min_fraction,
            "input_hashes": json.dumps({hash_key(raw_dir, basins_path): file_sha256(basins_path)}),
        },
    )
    with atomic_path(out) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4")
    return out


def load_mask(cfg: Config, mask_file: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str], dict[str, str]]:
    """(mask bool, basin_id int32, names, input hashes), checked against the configured grid."""
    path = Path(mask_file)
    if not path.is_file():
        raise DataError(f"{path}: mask not found (run 'soilcast clip')")
    with xr.open_dataset(path, engine="netcdf4") as ds:
        lat, lon = target_axes(cfg.grid)
        if ds["mask"].shape != (lat.size, lon.size) or not np.allclose(ds["lat"].values, lat) or not np.allclose(ds["lon"].values, lon):
            raise DataError(f"{path}: grid differs from params 'grid' (rerun 'soilcast clip')")
        mask = ds["mask"].values.astype(bool)
        bid = ds["basin_id"].values.astype(np.int32)
        names = {int(k): v for k, v in json.loads(ds.attrs["basin_names"]).items()}
        hashes = json.loads(ds.attrs["input_hashes"])
    return mask, bid, names, hashes


def apply_mask(values: np.ndarray, mask: np.ndarray, copy: bool = True) -> np.ndarray:
    """NaN outside ``mask``; ``values`` is [..., H, W] or [..., H, W, C] with mask [H, W].

    ``copy=False`` masks a float32 array in place (the stack stage's large blocks).
    """
    out = np.array(values, dtype=np.float32, copy=copy or values.dtype != np.float32)
    if out.shape[-2:] == mask.shape:
        out[..., ~mask] = np.nan
    elif out.shape[-3:-1] == mask.shape:
        out[..., ~mask, :] = np.nan
    else:
        raise ValueError(f"mask shape {mask.shape} does not match values {out.shape}")
    return out
