"""Reading and writing cubes: GeoTIFF/COG through rasterio, Zarr v3 with atomic commits."""

from __future__ import annotations

from .points import PointStore, QueryResult
from .raster import read_raster, write_raster
from .sources import SourceSpec, open_source
from .zarr import open_cube, to_zarr

__all__ = ["read_raster", "write_raster", "open_cube", "to_zarr", "PointStore", "QueryResult",
           "open_source", "SourceSpec"]
