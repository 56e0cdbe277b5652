"""Synthetic demo regions: India's outline cut into compact, roughly equal-area pieces.

The pieces stand in for river basins so the pipeline can be run end to end without
licensed data; they are NOT basins (their names say so). The cut is a Voronoi partition
of seeded points, relaxed a few times towards the pieces' centroids (Lloyd's algorithm) so
the regions are compact and of similar size. Deterministic for a seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from soilcast.io.atomic import atomic_write_text

LLOYD_ITERATIONS = 20
CRS_URN = "urn:ogc:def:crs:EPSG::4326"


def read_outline(path: Path) -> shapely.Geometry:
    """Union of all polygons in a GeoJSON file (lon/lat degrees)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: India outline for the demo regions not found (demo.india_outline)")
    features = json.loads(path.read_text()).get("features", [])
    geoms = [shapely.geometry.shape(f["geometry"]) for f in features if f.get("geometry")]
    if not geoms:
        raise ValueError(f"{path}: expected at least one polygon feature")
    outline = shapely.union_all(geoms)
    if outline.area <= 0:
        raise ValueError(f"{path}: the outline has no area")
    return outline


def _cells(outline: shapely.Geometry, seeds: np.ndarray) -> list[shapely.Geometry]:
    minx, miny, maxx, maxy = outline.bounds
    frame = shapely.box(minx - 10, miny - 10, maxx + 10, maxy + 10)
    voronoi = shapely.voronoi_polygons(shapely.MultiPoint(seeds), extend_to=frame, ordered=True)
    return [shapely.intersection(cell, outline) for cell in shapely.get_parts(voronoi)]


def split_outline(outline: shapely.Geometry, n: int, seed: int) -> list[shapely.Geometry]:
    """``n`` compact pieces of ``outline``, ordered north to south (then west to east)."""
    rng = np.random.default_rng([seed, 2])
    minx, miny, maxx, maxy = outline.bounds
    seeds: list[tuple[float, float]] = []
    while len(seeds) < n:
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if outline.contains(shapely.Point(x, y)):
            seeds.append((x, y))
    points = np.array(seeds)
    for _ in range(LLOYD_ITERATIONS):
        cells = _cells(outline, points)
        points = np.array([[c.centroid.x, c.centroid.y] if not c.is_empty else p for c, p in zip(cells, points)])
    cells = [c for c in _cells(outline, points) if not c.is_empty]
    if len(cells) != n:
        raise ValueError(f"demo regions: could only cut {len(cells)} of {n} regions")
    return sorted(cells, key=lambda c: (-round(c.centroid.y, 6), round(c.centroid.x, 6)))


def regions_geojson(pieces: list[shapely.Geometry], id_field: str, name_field: str) -> dict[str, Any]:
    features = [
        {
            "type": "Feature",
            "properties": {
                id_field: i,
                name_field: f"Demo region {i} (not a real basin)",
                "note": "synthetic piece of India's Natural Earth outline; not a river basin",
            },
            "geometry": shapely.geometry.mapping(piece),
        }
        for i, piece in enumerate(pieces, start=1)
    ]
    return {
        "type": "FeatureCollection",
        "name": "demo_regions",
        "crs": {"type": "name", "properties": {"name": CRS_URN}},
        "features": features,
    }


def write_demo_regions(outline_path: Path, target: Path, n: int, seed: int, id_field: str, name_field: str) -> None:
    """Cut the outline and write the regions as GeoJSON (EPSG:4326 declared), atomically."""
    pieces = split_outline(read_outline(outline_path), n, seed)
    atomic_write_text(Path(target), json.dumps(regions_geojson(pieces, id_field, name_field)) + "\n")
