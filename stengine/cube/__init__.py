"""Cube conventions: how a gridded cube carries its grid, and how cubes are validated.

A gridded cube is a DataArray with spatial dims ``(y, x)`` last, optionally after
``band`` or ``time``; ``x``/``y`` coordinates are pixel centres; CRS and transform
live on a scalar ``spatial_ref`` coordinate the way rioxarray writes them (CF grid
mapping attributes plus ``crs_wkt`` and GDAL's ``GeoTransform``), so results open in
rioxarray and odc-geo. ``time`` is ``datetime64[ns]`` UTC. Integer rasters keep
their nodata value in ``attrs["nodata"]``; float rasters use NaN.
"""

from __future__ import annotations

from .catalog import ChunkCatalog, chunk_catalog, select
from .conventions import SPATIAL_REF, get_grid, make_raster, set_grid
from .validate import check_dtype, check_raster, check_same_grid, spatial_dims

__all__ = [
    "SPATIAL_REF",
    "get_grid",
    "set_grid",
    "make_raster",
    "check_raster",
    "check_same_grid",
    "check_dtype",
    "spatial_dims",
    "ChunkCatalog",
    "chunk_catalog",
    "select",
]
