"""Synthetic polygon zones for the zonal benchmarks: Voronoi cells of random points.

The raster benchmark's three zone sets are US states, counties and census tracts; here
they are stood in for by Voronoi polygons of uniformly random points over the raster's
extent (clipped to it), at the same counts: ~50 "states", ~3,100 "counties", ~73,000
"tracts". Cached as GeoParquet under ``.cache/bench/``.
"""

from __future__ import annotations

import numpy as np

from .data import cache, grid

SCALES = {"states": 50, "counties": 3100, "tracts": 73000}


def voronoi_zones_path(size: str, scale: str, seed: int = 0):
    """Path of a GeoParquet of ``SCALES[scale]`` Voronoi polygons over ``size``'s extent."""
    path = cache() / f"zones_{size}_{scale}_s{seed}.parquet"
    if not path.exists():
        gdf = make_voronoi(grid(size), SCALES[scale], seed=seed)
        tmp = path.with_suffix(".tmp.parquet")
        gdf.to_parquet(tmp)
        tmp.replace(path)
    return path


def voronoi_zones(size: str, scale: str, seed: int = 0):
    """The zones of :func:`voronoi_zones_path` as a GeoDataFrame (index ``zone``)."""
    import geopandas as gpd

    return gpd.read_parquet(voronoi_zones_path(size, scale, seed))


def make_voronoi(g, n: int, seed: int = 0):
    """``n`` Voronoi polygons of random points over grid ``g``'s bounds, clipped to them."""
    import geopandas as gpd
    import shapely

    left, bottom, right, top = g.bounds
    rng = np.random.default_rng(seed)
    pts = shapely.points(rng.uniform(left, right, n), rng.uniform(bottom, top, n))
    box = shapely.box(left, bottom, right, top)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(pts), extend_to=box))
    cells = shapely.intersection(cells, box)
    # Voronoi output order is not the points' order; sort by centroid for a stable id
    c = shapely.centroid(cells)
    order = np.lexsort((shapely.get_x(c), -shapely.get_y(c)))
    gdf = gpd.GeoDataFrame({"zone": np.arange(len(cells), dtype=np.int64)},
                           geometry=cells[order], crs=g.crs)
    return gdf.set_index("zone")
